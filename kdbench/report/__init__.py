"""Reporting: stored run records -> leaderboard (Markdown, CSV, JSON, figures), plus the
reproduction table (`reproduction`) and the tuning summary (`tuning_summary`).

One module per job, in the order data flows through them:

- `load`: the stored files (runs, tuning summaries, inference-cost measurements) as flat tables.
- `aggregation`: one leaderboard row per strategy and table, with the tests against scratch
  (statistics in `kdbench.report.stats`); `schema` names its columns after the primary metric.
- `tables`: the other tables: inference cost and speed-ups, compression curves, detectable effects.
- `leaderboard`: all of the above, built once (`build_leaderboard`) into a `Leaderboard`.
- rendering: `markdown` (with `legend`, its fixed prose, and `formatting`, how a value reads),
  `exports` (CSV, and the JSON payload every further renderer can share), `plots` (the PNGs).
- `write`: `write_reports`, every output of `write.OUTPUTS` replaced together.

Everything is a pure function of the run files and the inference-cost files (`cost/`, written by
`python -m kdbench cost`; plus the command line and wall time stored beside the leaderboard by
`run --all`), so `python -m kdbench report` rebuilds byte-identical files.
"""

from kdbench.report.aggregation import aggregate, paired_tests
from kdbench.report.leaderboard import Leaderboard, build_leaderboard
from kdbench.report.load import load_costs, load_runs, load_tuning
from kdbench.report.markdown import render_markdown
from kdbench.report.schema import COLUMNS
from kdbench.report.tables import compression_curves, detectable_effects, inference_table, shape_cost, speedups
from kdbench.report.write import OUTPUTS, write_reports

__all__ = [
    "COLUMNS", "OUTPUTS", "Leaderboard", "aggregate", "build_leaderboard", "compression_curves",
    "detectable_effects", "inference_table", "load_costs", "load_runs", "load_tuning", "paired_tests",
    "render_markdown", "shape_cost", "speedups", "write_reports",
]
