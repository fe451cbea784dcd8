"""The use cases behind the command line, as functions a test or a notebook calls with plain
arguments (no argparse): each returns what it made (records, written paths, summaries), and the
command line (`kdbench.cli`) only parses flags into these arguments and prints the result.

- `execution`: where and how cells run (`Execution`), the executor, and running checked cells.
- `run`: a single run from explicit settings, or a whole suite and its leaderboard.
- `tune`: every strategy of a suite with the same Optuna budget.
- `sweep`: a backbone from scratch at several sizes.
- `cost`: inference cost per model shape of a suite.
- `reproduce`: a published table's suite, run and compared (one stored run again: `kdbench.run.reproduce`).
- `report`: the leaderboards and the reproduction table, rebuilt from stored runs.
- `listing`: what kdbench knows (datasets, backbones, strategies, tuned hyperparameters).
- `verify`: the stored results parse and are current, and the leaderboards match `report`.

Importing a dataset is `kdbench.data.importer.import_dataset`.
"""
