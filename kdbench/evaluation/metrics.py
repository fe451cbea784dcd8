"""The primary metric: the one test metric the benchmark ranks by, tests for significance, and tunes on.

Named once here, the layer below everything that reads a record, so that the leaderboard, the
figures, the reproduction table and the command line agree on it; a record stores it (with the
other metrics, `results.METRICS`) under `test`, and its best validation value under
`VALID_PRIMARY_METRIC`.
"""

PRIMARY_METRIC = "ndcg@10"  # full-ranking NDCG at 10 (RecBole's `ndcg@10`)
VALID_PRIMARY_METRIC = f"valid_{PRIMARY_METRIC}"  # a run record's best validation value (early stopping)
