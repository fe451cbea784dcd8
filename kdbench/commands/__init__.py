"""The use cases behind the command line, as functions a test or a notebook calls with plain
arguments (no argparse): each returns what it made (records, written paths, summaries), and the
command line (`kdbench.cli`) only parses flags into these arguments and prints the result.

- `execution`: where and how cells run (`Execution`), the executor, and running checked cells.
- `run`: a single run from explicit settings, or a whole suite and its leaderboard.
- `tune`: every strategy of a suite with the same Optuna budget.
- `sweep`: a backbone from scratch at several sizes.
- `cost`: inference cost per model shape of a suite.
- `reproduce`: a published table's suite, run and compared (one stored run again: `kdbench.reproduce`).
- `report`: the leaderboards and the reproduction table, rebuilt from stored runs.
- `listing`: what kdbench knows (datasets, backbones, strategies, tuned hyperparameters).

Checking stored results is `kdbench.verify.verify`; importing a dataset `kdbench.importer.import_dataset`.
"""
