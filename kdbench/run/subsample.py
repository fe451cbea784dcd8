"""Less training data: a share of each user's training interactions, validation and test unchanged.

A cell with `data_share` s < 1 (`kdbench data-share`) trains on a per-user subsample of its split's
training part: a user with n training interactions keeps

    k(n) = max(1, floor(s * n + 1/2))   (s * n rounded half up, at least one)

of them, drawn uniformly without replacement by a generator seeded with the cell's
`subsample_seed`; the draw sees the interactions sorted by (user, item), so it depends on the
seed and the split, nothing else. Validation and test loaders are the full split's, untouched:
every share is scored on the same users, positives and candidate items (the test still masks all
of a user's training interactions, the dropped ones included, so that the candidates stay the
same). The training loader, its negative sampler and `history` (what strategies treat as observed)
are rebuilt from the kept interactions only: for the models, a dropped interaction does not exist.
The fingerprint hashes the full split's with the share, the seed and the kept interactions, so
teachers trained on a subsample never share a cache entry with the full split's. A run's
beyond-accuracy metrics (item popularity, the tail) and its test users' training counts are those of
the training data it saw: the subsample.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import numpy as np
import torch

from kdbench.data.loading import PreparedData
from kdbench.errors import KdbenchError

FULL_SHARE = 1.0  # the whole training split: no subsample, and nothing in the cell's identity


def check_share(share: float) -> float:
    """`share` as a float in (0, 1], or one line saying why not."""
    if not (isinstance(share, (int, float)) and math.isfinite(share) and 0 < share <= 1):
        raise KdbenchError(f"a data share must be a number in (0, 1], got {share!r}")
    return float(share)


def kept_per_user(n: np.ndarray, share: float) -> np.ndarray:
    """k(n) of the module docstring for each count in `n` (0 stays 0)."""
    n = np.asarray(n, dtype=np.int64)
    # the 1e-9 keeps products such as 0.29 * 100 = 28.999999999999996 on the intended side
    kept = np.floor(share * n + 0.5 + 1e-9).astype(np.int64)
    return np.where(n > 0, np.clip(kept, 1, n), 0)


def subsample_rows(users: np.ndarray, items: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Indices (ascending) of the training rows kept: k(n) rows per user (module docstring)."""
    users, items = np.asarray(users), np.asarray(items)
    canonical = np.lexsort((items, users))  # by user, then item: independent of the row order
    keys = np.random.default_rng(seed).random(len(users))
    ordered_users = users[canonical]
    order = canonical[np.lexsort((keys, ordered_users))]  # per user, in the random keys' order
    grouped = users[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if len(grouped) else np.array([], int)
    counts = np.diff(np.r_[starts, len(order)])
    position = np.arange(len(order)) - np.repeat(starts, counts)
    keep = position < np.repeat(kept_per_user(counts, share), counts)
    return np.sort(order[keep])


def subsample_training(data: PreparedData, share: float, seed: int) -> PreparedData:
    """`data` with its training part cut to `share` of each user's interactions (module docstring);
    `data` itself at the full share. General recommenders only (a user-id query)."""
    share = check_share(share)
    if share == FULL_SHARE:
        return data
    if data.queries is not None:
        raise KdbenchError("less training data (--shares) is for general recommenders; a sequential model's "
                           "training queries are not subsampled")
    from recbole.data.utils import create_samplers, get_dataloader

    train = data.train._dataset
    inter = train.inter_feat
    rows = subsample_rows(inter[train.uid_field].numpy(), inter[train.iid_field].numpy(), share, seed)
    kept = train.copy(inter[torch.from_numpy(rows)])
    built = [kept, data.valid._dataset, data.test._dataset]
    sampler, _, _ = create_samplers(data.config, data.dataset, built)
    loader = get_dataloader(data.config, "train")(data.config, kept, sampler, shuffle=data.config["shuffle"])
    history = kept.inter_matrix(form="csr").astype(np.float32).tocsr()
    return replace(data, train=loader, history=history,
                   fingerprint=subsample_fingerprint(data.fingerprint, share, seed, history))


def subsample_fingerprint(full: str, share: float, seed: int, history) -> str:
    """The subsample's hash: the full split's fingerprint, the share, the seed and the kept rows."""
    digest = hashlib.sha256()
    digest.update(f"{full}|share={share!r}|seed={seed}".encode())
    digest.update(np.ascontiguousarray(history.indptr).tobytes())
    digest.update(np.ascontiguousarray(history.indices).tobytes())
    return digest.hexdigest()[:16]
