"""Measuring a trained model: quality on the full catalogue and the cost of serving it.

- `metrics`: the primary metric (NDCG@10), ranked, tested and tuned on;
- `evaluator`: full-ranking metrics through RecBole's evaluator, per user, and a run's own cost;
- `beyond`: beyond-accuracy metrics of the test users' top-K lists and the user groups;
- `compressed_cost`: the kernels of compressed shapes (CSR, int8, int4) that `cost` times
  (`kdbench.run.inference_cost`).
"""
