"""What the micro-benchmarks share: the shapes, the synthetic catalogue, the session's models and
prepared strategies, one training step, the roofline, and timing in alternation.

Every model is randomly initialised (seed 0): the cost of scoring, sampling and a training step
does not depend on what the weights have learnt. The KD pairing is the default one,
BPR:200 -> BPR:20, with the teacher frozen as the runner freezes it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from kdbench.backbones import BackboneAdapter, BackboneSpec, build_model
from kdbench.data import TOPK, PreparedData, load_data
from kdbench.strategies import STRATEGIES, DistillationContext, DistillationStrategy
from kdbench.train import TrainSettings

THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

ML100K = "ml-100k"
SYNTHETIC = "synthetic-100k"
DATASETS = (ML100K, SYNTHETIC)
SYNTHETIC_SHAPE = {"n_users": 10_000, "n_items": 100_000, "per_user": 25}
MIN_PER_USER = 20  # enough for a per-user 80/10/10 split with at least two items held out

TEACHER = BackboneSpec("BPR", 200)
STUDENT = BackboneSpec("BPR", 20)
INFERENCE_MODELS = tuple(
    BackboneSpec(model, dim)
    for model, dim in (("BPR", 200), ("BPR", 64), ("BPR", 20), ("BPR", 10), ("LightGCN", 64), ("LightGCN", 8))
)
ROOFLINE_DIMS = tuple(sorted({spec.dim for spec in INFERENCE_MODELS}, reverse=True))
BATCHES = (256, 1)
K = max(TOPK)
# The first epoch, and one past every warm-up phase (RD's dynamic weights start after epoch 10).
EPOCHS = (1, 20)

# Figures gathered during the run, printed by conftest.py's terminal summary.
SUMMARY: dict[str, list[dict[str, Any]]] = defaultdict(list)


def write_synthetic_catalogue(root: Path, name: str, n_users: int, n_items: int, per_user: int,
                              seed: int = 0) -> Path:
    """`root/<name>/<name>.inter` in RecBole's atomic format; returns `root`.

    Every item is dealt once, round-robin over a random permutation (n_items / n_users each),
    then every user gets `per_user` more items drawn uniformly; repeated pairs are dropped.
    """
    rng = np.random.default_rng(seed)
    dealt = np.arange(n_items, dtype=np.int64) % n_users * n_items + rng.permutation(n_items)
    extra = np.repeat(np.arange(n_users, dtype=np.int64), per_user) * n_items + rng.integers(0, n_items, n_users * per_user)
    keys = np.unique(np.concatenate([dealt, extra]))
    keys = keys[rng.permutation(keys.size)]
    users, items = keys // n_items, keys % n_items
    if np.bincount(users, minlength=n_users).min() < MIN_PER_USER or np.unique(items).size != n_items:
        raise AssertionError("synthetic catalogue: a user has too few items or an item never appears")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(f"u{user}\ti{item}" for user, item in zip(users.tolist(), items.tolist()))
    (folder / f"{name}.inter").write_text("user_id:token\titem_id:token\n" + rows + "\n")
    return root


def sample_users(n_users: int, batch: int, seed: int = 0) -> torch.Tensor:
    """`batch` user ids, padding user 0 excluded, as kdbench.evaluate.inference_cost draws them."""
    return torch.randint(1, n_users, (batch,), generator=torch.Generator().manual_seed(seed))


class Roofline:
    """The bare operations full-catalogue scoring cannot beat: (B x d) @ (d x n_items), then top-K."""

    def __init__(self, n_items: int, dim: int, batch: int, dtype: torch.dtype = torch.float32, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.users = torch.randn(batch, dim, generator=generator).to(dtype)
        self.items = torch.randn(n_items, dim, generator=generator).to(dtype)  # laid out as an embedding table

    @torch.no_grad()
    def __call__(self) -> torch.Tensor:
        return torch.topk(self.users @ self.items.T, K, dim=1).indices


class TrainingStep:
    """One optimisation step of the student on a fixed batch, exactly as kdbench.train.fit takes it."""

    def __init__(self, strategy: DistillationStrategy, batch, settings: TrainSettings = TrainSettings()):
        self.strategy = strategy
        self.student = strategy.context.student
        self.batch = batch
        params = list(self.student.model.parameters()) + [p for p in strategy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        self.student.model.train()

    def start_epoch(self, epoch: int) -> None:
        """The strategy's per-epoch resampling (untimed setup)."""
        self.strategy.on_epoch_start(epoch)

    def __call__(self) -> None:
        model = self.student.model
        with self.student.one_forward_per_step():
            loss = model.calculate_loss(self.batch)
            loss = sum(loss) if isinstance(loss, tuple) else loss
            kd_loss = self.strategy.loss(self.batch)
            if kd_loss is not None:
                loss = loss + self.strategy.weight * kd_loss
        if not torch.isfinite(loss):
            raise RuntimeError(f"strategy '{self.strategy.name}': the loss is {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def paired_medians(first: Callable[[], Any], second: Callable[[], Any], budget_s: float = 0.5,
                   min_pairs: int = 5, max_pairs: int = 50) -> tuple[float, float]:
    """Median seconds of `first` and `second`, timed in alternation (AB BA AB ...).

    On a machine whose load changes during the run both slow down alike, so their ratio stays
    meaningful where two separately timed benchmarks would not be.
    """
    times: tuple[list[float], list[float]] = ([], [])
    start = time.perf_counter()
    pairs = 0
    while pairs < max_pairs and (pairs < min_pairs or time.perf_counter() - start < budget_s):
        order = (0, 1) if pairs % 2 == 0 else (1, 0)
        for which in order:
            fn = (first, second)[which]
            tic = time.perf_counter()
            fn()
            times[which].append(time.perf_counter() - tic)
        pairs += 1
    return statistics.median(times[0]), statistics.median(times[1])


def run_sized(benchmark, fn: Callable[[], Any], budget_s: float = 2.0, max_rounds: int = 20):
    """benchmark.pedantic with rounds sized from one untimed trial call (which also warms up).

    For targets that may take seconds (an epoch's resampling on the large catalogue): they run
    once or twice; the cheap ones get up to `max_rounds`.
    """
    tic = time.perf_counter()
    fn()
    trial = time.perf_counter() - tic
    rounds = max(1, min(max_rounds, int(budget_s / max(trial, 1e-9))))
    return benchmark.pedantic(fn, rounds=rounds, iterations=1)


def median_seconds(benchmark) -> float | None:
    """The benchmark's median, or None where timing is off (--benchmark-disable)."""
    return benchmark.stats["median"] if benchmark.stats else None


class BenchSession:
    """Lazily loaded catalogues and what the benchmarks build on them, shared by the whole run."""

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self._data: dict[str, PreparedData] = {}
        self._models: dict[tuple[str, BackboneSpec], nn.Module] = {}
        self._batches: dict[str, Any] = {}
        self._prepared: dict[tuple[str, str], DistillationStrategy] = {}
        self._steps: dict[tuple[str, str], TrainingStep] = {}

    def data(self, dataset: str) -> PreparedData:
        if dataset not in self._data:
            batch_size = TrainSettings().batch_size
            cache = self.work_dir / "cache"
            if dataset == ML100K:
                self._data[dataset] = load_data(ML100K, batch_size=batch_size, work_dir=cache)
            else:
                root = write_synthetic_catalogue(self.work_dir / "atomic", dataset, **SYNTHETIC_SHAPE)
                self._data[dataset] = load_data(dataset, str(root), batch_size=batch_size, work_dir=cache)
        return self._data[dataset]

    def info(self, dataset: str) -> dict[str, Any]:
        """extra_info common to every benchmark on `dataset`."""
        data = self.data(dataset)
        return {"dataset": dataset, "n_users": data.n_users, "n_items": data.n_items,
                "torch_threads": torch.get_num_threads()}

    def adapter(self, dataset: str, model: nn.Module) -> BackboneAdapter:
        data = self.data(dataset)
        return BackboneAdapter(model, data.uid_field, data.iid_field)

    def frozen_model(self, dataset: str, spec: BackboneSpec) -> nn.Module:
        """A randomly initialised model in eval mode with no gradients: deployed, or a teacher."""
        key = (dataset, spec)
        if key not in self._models:
            torch.manual_seed(0)
            model = build_model(spec, self.data(dataset)).eval()
            for param in model.parameters():
                param.requires_grad_(False)
            self._models[key] = model
        return self._models[key]

    def new_strategy(self, dataset: str, name: str) -> DistillationStrategy:
        """A fresh student and strategy on the shared frozen teacher, built as the runner builds them."""
        data = self.data(dataset)
        torch.manual_seed(0)
        student = build_model(STUDENT, data)
        context = DistillationContext(
            teacher=self.adapter(dataset, self.frozen_model(dataset, TEACHER)),
            student=self.adapter(dataset, student),
            n_users=data.n_users, n_items=data.n_items, history=data.history,
            uid_field=data.uid_field, iid_field=data.iid_field, neg_iid_field=data.neg_iid_field,
            device=torch.device("cpu"), seed=0,
        )
        return STRATEGIES.get(name)(context).to("cpu")

    def keep_prepared(self, dataset: str, name: str, strategy: DistillationStrategy) -> None:
        """Keep a strategy whose prepare() a benchmark has run, so later ones need not redo it."""
        self._prepared.setdefault((dataset, name), strategy)

    def prepared(self, dataset: str, name: str) -> DistillationStrategy:
        key = (dataset, name)
        if key not in self._prepared:
            strategy = self.new_strategy(dataset, name)
            strategy.prepare()
            self._prepared[key] = strategy
        return self._prepared[key]

    def batch(self, dataset: str):
        """The first training batch (2048 interactions with their sampled negatives), fixed by seed."""
        if dataset not in self._batches:
            loader = self.data(dataset).train
            loader.generator.manual_seed(0)
            np.random.seed(0)  # RecBole draws its negatives from numpy's global generator
            self._batches[dataset] = next(iter(loader))
        return self._batches[dataset]

    def training_step(self, dataset: str, name: str) -> TrainingStep:
        key = (dataset, name)
        if key not in self._steps:
            self._steps[key] = TrainingStep(self.prepared(dataset, name), self.batch(dataset))
        return self._steps[key]
