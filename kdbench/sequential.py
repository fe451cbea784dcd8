"""Moved to `kdbench.families.sequential` (the sequential family's own file). This alias remains for
`evaluate.evaluation_adapter` only, until it asks the model's family for its adapter
(`families.family_of_model(model).evaluation_adapter`); then it goes."""

from kdbench.families.sequential import QUERY_FIELD, QueryTable, SequentialAdapter

__all__ = ["QUERY_FIELD", "QueryTable", "SequentialAdapter"]
