"""BD's rank pass, computed with integer keys, gives exactly the former ranks: the reference below is
the stable descending float sort of the code before."""

from __future__ import annotations

import torch

from kdbench.strategies.bd import descending_ranks


def reference_ranks(scores):
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    positions = torch.arange(1, scores.shape[1] + 1).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def test_ranks_equal_the_stable_float_sort_with_ties_infinities_and_signed_zeros():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(50, 300, generator=gen) * 10.0 ** torch.randint(-30, 30, (50, 1), generator=gen)
    scores[:, ::7] = scores[:, 3:4]  # ties inside a row
    scores[:, 5::11] = 0.0
    scores[:, 6::13] = -0.0
    scores[:, 0] = -torch.inf
    scores[::3, 10:40] = -torch.inf  # like the masked training items
    scores[1, 50:60] = torch.inf
    scores[2] = scores[2].round()  # many ties
    scores[4] = 1.0  # all tied
    scores[7, 100:110] = torch.tensor([1e-45, -1e-45, 1.17e-38, -1.17e-38, 3.4e38, -3.4e38, 1.0, -1.0, 2.0, -2.0])
    got = descending_ranks(scores)
    assert got.dtype == torch.int64
    assert torch.equal(got, reference_ranks(scores))


def test_ranks_of_random_catalogue_rows_equal_the_stable_float_sort():
    gen = torch.Generator().manual_seed(1)
    scores = (torch.randn(20, 5000, generator=gen) * 4).round(decimals=2)  # about 2,000 distinct values a row
    assert torch.equal(descending_ranks(scores), reference_ranks(scores))
    assert torch.equal(descending_ranks(scores[:, :1]), reference_ranks(scores[:, :1]))
