"""Inference cost per model shape: (model, dim, catalogue), measured once, carefully, in one sitting.

A run's own throughput figure is one measurement on a small catalogue, and the same shape gives
figures 2x apart from run to run. What a deployment needs is how a student's *shape* costs at
*its* catalogue size, so `python -m kdbench cost` measures every shape of a suite once per
(dataset, teacher) sitting: the teacher and all its students (and the roofline of each embedding
size, the bare `U @ I.T` + `torch.topk` the micro-benchmarks use) on

- the dataset's own catalogue (the suite's split, randomly initialised models), and
- deployment-size synthetic catalogues (default 100,000 and 1,000,000 items, 10,000 users), the
  same shapes with random weights: cost does not depend on what the weights have learnt.

Each target gets `warmup` untimed calls (LightGCN propagates once and caches the result, as
deployed), then `rounds` rounds in which every target is called once, in an order reversed every
other round (ABC CBA ABC ...): all targets see the same load, so their ratios hold on a busy
machine. Per target: median, quartiles, min and max of the call time, for batches of 256 users
(throughput) and of one user (latency). One JSON file per sitting,
`<results>/cost/<dataset>/<teacher>.json`, written atomically; `kdbench report` reads it.

Sequential shapes (a family without `catalogue_cost`) are measured the same way, once per shape and
with the same repeats, on their dataset only: a query is a test user's input sequence (the family's
`cost_adapter`), which synthetic catalogues do not have. Their sitting is named by the dataset's
table label (`ml-100k@leave-one-out`), the label their leaderboard rows carry.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from kdbench.store import atomic
from kdbench.data.loading import TOPK
from kdbench.families import BackboneSpec, default_protocol, family_of
from kdbench.run.record import dataset_label, safe_name

COST_FORMAT = 1  # `kdbench_cost` in every cost file
DEPLOYMENT_ITEMS = (100_000, 1_000_000)
SYNTHETIC_USERS, SYNTHETIC_PER_USER = 10_000, 25
BATCHES = (256, 1)  # users per call: throughput, then single-user latency
K = max(TOPK)
MIN_PER_USER = 20  # enough for a per-user 80/10/10 split with at least two items held out
MODEL, ROOFLINE = "model", "roofline"
COMPRESSED = "compressed"  # a compressed shape scored with its format's kernel (`compressed_cost`)
MAX_ROUNDS = 500


# -- the shared pieces of the micro-benchmarks (benchmarks/_support.py imports them) ----------------
def write_synthetic_catalogue(root: Path, name: str, n_users: int, n_items: int, per_user: int,
                              seed: int = 0) -> Path:
    """`root/<name>/<name>.inter` in RecBole's atomic format; returns `root`.

    Every item is dealt once, round-robin over a random permutation (n_items / n_users each),
    then every user gets `per_user` more items drawn uniformly; repeated pairs are dropped.
    """
    rng = np.random.default_rng(seed)
    dealt_users, dealt_items = np.arange(n_items) % n_users, rng.permutation(n_items)
    extra_users, extra_items = np.repeat(np.arange(n_users), per_user), rng.integers(0, n_items, n_users * per_user)
    pairs = np.unique(np.concatenate([dealt_users * n_items + dealt_items, extra_users * n_items + extra_items]))
    pairs = pairs[rng.permutation(pairs.size)]  # key user * n_items + item, in no particular order
    users, items = pairs // n_items, pairs % n_items
    if np.bincount(users, minlength=n_users).min() < MIN_PER_USER or np.unique(items).size != n_items:
        raise AssertionError("synthetic catalogue: a user has too few items or an item never appears")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(f"u{user}\ti{item}" for user, item in zip(users.tolist(), items.tolist()))
    (folder / f"{name}.inter").write_text("user_id:token\titem_id:token\n" + rows + "\n")
    return root


def sample_users(n_users: int, batch: int, seed: int = 0):
    """`batch` user ids, padding user 0 excluded, as kdbench.evaluation.evaluator.inference_cost draws them."""
    import torch

    return torch.randint(1, n_users, (batch,), generator=torch.Generator().manual_seed(seed))


class Roofline:
    """The bare operations full-catalogue scoring cannot beat: (B x d) @ (d x n_items), then top-K."""

    def __init__(self, n_items: int, dim: int, batch: int, dtype=None, seed: int = 0, k: int = K):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.users = torch.randn(batch, dim, generator=generator).to(dtype or torch.float32)
        self.items = torch.randn(n_items, dim, generator=generator).to(dtype or torch.float32)  # an embedding table
        self.k = k

    def __call__(self):
        import torch

        with torch.no_grad():
            return torch.topk(self.users @ self.items.T, self.k, dim=1).indices


def time_interleaved(targets: Sequence[Callable[[], Any]], rounds: int, first_round: int = 0) -> list[list[float]]:
    """Seconds of each call of each target: one call of every target per round, the order reversed
    every other round (ABC CBA ABC ..., counting from `first_round`). Every target sees the same
    load, so the ratio of two targets' medians stays meaningful while the machine's load changes."""
    times: list[list[float]] = [[] for _ in targets]
    for number in range(first_round, first_round + rounds):
        order = range(len(targets)) if number % 2 == 0 else reversed(range(len(targets)))
        for which in order:
            tic = time.perf_counter()
            targets[which]()
            times[which].append(time.perf_counter() - tic)
    return times


def spread(seconds: Sequence[float]) -> dict[str, float]:
    """Median, quartiles (numpy's linear interpolation), min, max and count of call times."""
    values = np.asarray(seconds, dtype=float)
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return {"median_s": float(q50), "q25_s": float(q25), "q75_s": float(q75),
            "min_s": float(values.min()), "max_s": float(values.max()), "n": int(values.size)}


# -- one sitting -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sitting:
    """The shapes measured together: a dataset's teacher and every student a suite gives it."""

    dataset: str
    teacher: BackboneSpec
    students: tuple[BackboneSpec, ...]
    data_path: str | None = None
    split_seed: int = 2020
    protocol: str | None = None  # None: the family's default (the general family's `random`)
    # compressed shapes the suite deploys (`compressed_cost.cell_targets`): (spec, kind, budget spec)
    compressed: tuple[tuple[str, str, str | None], ...] = ()

    @property
    def shapes(self) -> tuple[BackboneSpec, ...]:
        return (self.teacher, *self.students)

    @property
    def catalogue_cost(self) -> bool:
        """Whether the shapes are also measured on synthetic catalogues (not a sequential family)."""
        return family_of(self.teacher).catalogue_cost

    @property
    def label(self) -> str:
        """The dataset as its tables name it: `ml-100k`, `ml-100k@leave-one-out`."""
        return dataset_label(self.dataset, self.protocol or default_protocol(self.teacher))

    def path(self, results_dir: str | Path) -> Path:
        return Path(results_dir) / "cost" / safe_name(self.label) / f"{safe_name(str(self.teacher))}.json"


def sittings(cells: Iterable) -> list[Sitting]:
    """One sitting per (dataset, protocol, teacher) of a suite's cells, its students by model and
    size, and the compressed shapes its compression cells deploy; a general family's protocol is
    left at None where it is the family's default (the sittings and files of before sequential
    shapes were measured)."""
    from kdbench.evaluation.compressed_cost import cell_targets

    found: dict[tuple, set] = {}
    compressed: dict[tuple, dict] = {}
    for cell in cells:
        protocol = None if cell.protocol == default_protocol(cell.teacher) else cell.protocol
        key = (cell.dataset, cell.teacher, cell.data_path, cell.split_seed, protocol)
        found.setdefault(key, set()).add(cell.student)
        compressed.setdefault(key, {}).update(dict.fromkeys(cell_targets(cell)))
    return [Sitting(dataset, teacher, tuple(sorted(students - {teacher}, key=lambda s: (s.model, s.dim))),
                    data_path, split_seed, protocol, tuple(compressed[(dataset, teacher, data_path, split_seed, protocol)]))
            for (dataset, teacher, data_path, split_seed, protocol), students in found.items()]


def measure_catalogue(data, shapes: Sequence[BackboneSpec], rounds: int, warmup: int = 2,
                      batches: Sequence[int] = BATCHES, min_seconds: float = 3.0,
                      log: Callable[[str], None] = print,
                      compressed: Sequence[tuple[str, str, str | None]] = ()) -> list[dict[str, Any]]:
    """Every shape (randomly initialised, seed 0, frozen) and the roofline of every embedding size
    on `data`'s catalogue, interleaved; one row per target and batch size. `rounds` timed rounds, or
    as many more as fill about `min_seconds` (up to `MAX_ROUNDS`) where calls are quick."""
    import torch

    from kdbench.backbones import BackboneAdapter, build_model, count_parameters, model_size_bytes
    from kdbench.evaluation.evaluator import recommend_topk

    models, adapters, n_queries = {}, {}, data.n_users
    for spec in shapes:
        torch.manual_seed(0)
        model = build_model(spec, data).eval()
        for param in model.parameters():
            param.requires_grad_(False)
        models[spec] = model
        if family_of(spec).catalogue_cost:
            adapters[spec] = BackboneAdapter(model, data.uid_field, data.iid_field)
        else:  # a query is a test user's input sequence (the family's cost adapter, as in a run)
            adapters[spec], n_queries = family_of(spec).cost_adapter(model, data)
    dims = sorted({spec.dim for spec in shapes}, reverse=True)
    rows = []
    for batch in batches:
        users = sample_users(n_queries, batch)
        targets: list[tuple[dict[str, Any], Callable[[], Any]]] = []
        for spec, model in models.items():
            adapter = adapters[spec]
            targets.append(({"kind": MODEL, "model": str(spec), "dim": spec.dim, "params": count_parameters(model),
                             "size_bytes": model_size_bytes(model)},
                            lambda adapter=adapter: recommend_topk(adapter, users, K)))
        for dim in dims:
            targets.append(({"kind": ROOFLINE, "model": f"roofline:{dim}", "dim": dim, "params": None},
                            Roofline(data.n_items, dim, batch)))
        targets += compressed_targets(models, compressed, users, data)
        calls = [fn for _, fn in targets]
        time_interleaved(calls, warmup)
        # at least `rounds`, more where a round is quick: about `min_seconds` of timing per batch size
        round_s = sum(sum(t) for t in time_interleaved(calls, 1))
        here = max(rounds, min(MAX_ROUNDS, int(min_seconds / max(round_s, 1e-9))))
        log(f"  {data.n_items:,} items, {batch} user(s) per call: {len(calls)} targets x {here} rounds")
        times = time_interleaved(calls, here)
        for (target, _), seconds in zip(targets, times):
            rows.append(target | {"batch_users": batch} | spread(seconds))
    return rows


def compressed_targets(models: dict, compressed, users, data) -> list[tuple[dict[str, Any], Callable[[], Any]]]:
    """A target per compressed shape (`kdbench.evaluation.compressed_cost`): the tables of the shape's randomly
    initialised model (the same model the dense target times), compressed and scored with the
    format's kernel."""
    import torch

    from kdbench.backbones import BackboneAdapter, model_size_bytes
    from kdbench.evaluation.compressed_cost import compressed_name, compressed_scorer

    by_name = {str(spec): (spec, model) for spec, model in models.items()}
    targets = []
    for spec_name, kind, budget in compressed:
        spec, model = by_name[spec_name]
        with torch.no_grad():
            tables = [t.detach().float().clone()
                      for t in BackboneAdapter(model, data.uid_field, data.iid_field).representation_tables()]
        budget_bytes = model_size_bytes(by_name[budget][1]) if budget else None
        scorer = compressed_scorer(kind, *tables, K, budget_bytes)
        targets.append(({"kind": COMPRESSED, "model": compressed_name(spec_name, kind, budget), "dim": spec.dim,
                         "params": None, "size_bytes": scorer.size_bytes},
                        lambda scorer=scorer: scorer(users)))
    return targets


def measure(sitting: Sitting, catalogues: Sequence[int] = DEPLOYMENT_ITEMS, rounds: int = 11, warmup: int = 2,
            threads: int = 1, work_dir: str | Path = ".kdbench_cache", min_seconds: float = 3.0,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """The sitting's measurements on the dataset's catalogue and on each synthetic one."""
    import torch

    from kdbench.run.record import environment
    from kdbench.families import load_data

    torch.set_num_threads(threads)
    measurements = []
    log(f"{sitting.label}: {', '.join(map(str, sitting.shapes))}")
    if sitting.catalogue_cost:
        data = load_data(sitting.dataset, sitting.data_path, split_seed=sitting.split_seed, work_dir=work_dir)
    else:  # the family's own protocol and loaders; the dataset only (`catalogues` do not apply)
        data = load_data(sitting.dataset, sitting.data_path, model=sitting.teacher.model, split_seed=sitting.split_seed,
                         work_dir=work_dir, protocol=sitting.protocol or default_protocol(sitting.teacher))
        catalogues = ()
    for row in measure_catalogue(data, sitting.shapes, rounds, warmup, min_seconds=min_seconds, log=log,
                                 compressed=sitting.compressed):
        measurements.append({"catalogue": sitting.label, "synthetic": False, "n_items": data.n_items,
                             "n_users": data.n_users} | row)
    with tempfile.TemporaryDirectory(prefix="kdbench-cost-") as scratch:
        for n_items in catalogues:
            name = f"synthetic-{n_items}"
            root = write_synthetic_catalogue(Path(scratch) / "atomic", name, SYNTHETIC_USERS, n_items,
                                             SYNTHETIC_PER_USER)
            synthetic = load_data(name, str(root), split_seed=0, work_dir=Path(scratch) / "cache")
            for row in measure_catalogue(synthetic, sitting.shapes, rounds, warmup, min_seconds=min_seconds, log=log,
                                         compressed=sitting.compressed):
                measurements.append({"catalogue": name, "synthetic": True, "n_items": synthetic.n_items,
                                     "n_users": synthetic.n_users} | row)
            del synthetic
    return {
        "kdbench_cost": COST_FORMAT,
        "dataset": sitting.label,
        "teacher": str(sitting.teacher),
        "shapes": [str(s) for s in sitting.shapes],
        "settings": {"min_rounds": rounds, "min_seconds": min_seconds, "warmup": warmup, "threads": threads, "k": K, "batches": list(BATCHES),
                     "synthetic_users": SYNTHETIC_USERS, "synthetic_catalogues": list(catalogues)},
        "environment": environment(threads),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "measurements": measurements,
    }


def write(sitting: Sitting, payload: dict[str, Any], results_dir: str | Path) -> Path:
    path = sitting.path(results_dir)
    atomic.write_json(path, payload)
    return path


# -- what a cost file holds --------------------------------------------------------------------------
_MEASUREMENT_TEXT = ("catalogue", "kind", "model")
_MEASUREMENT_NUMBERS = ("n_items", "dim", "batch_users", "median_s", "q25_s", "q75_s", "min_s", "max_s", "n")


def check_cost(payload: Any) -> str | None:
    """What is wrong with a cost file's structure (a hand edit, a foreign file), or None."""
    if not isinstance(payload, dict):
        return f"expected a JSON object, found {type(payload).__name__}"
    if payload.get("kdbench_cost") != COST_FORMAT:
        return f"'kdbench_cost' is {payload.get('kdbench_cost')!r}, expected {COST_FORMAT}"
    for field in ("dataset", "teacher"):
        if not isinstance(payload.get(field), str) or not payload[field]:
            return f"'{field}' is missing or not a string"
    rows = payload.get("measurements")
    if not isinstance(rows, list):
        return "'measurements' is missing or not a list"
    for number, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"measurement {number} is not an object"
        for field in _MEASUREMENT_TEXT:
            if not isinstance(row.get(field), str):
                return f"measurement {number}: '{field}' is missing or not a string"
        for field in _MEASUREMENT_NUMBERS:
            value = row.get(field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                return f"measurement {number}: '{field}' is {value!r}, not a non-negative number"
        if row["kind"] not in (MODEL, ROOFLINE, COMPRESSED):
            return (f"measurement {number}: 'kind' is {row['kind']!r}, expected '{MODEL}', '{ROOFLINE}' "
                    f"or '{COMPRESSED}'")
    return None
