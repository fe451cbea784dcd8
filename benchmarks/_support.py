"""What the micro-benchmarks share: the shapes, the session's models and prepared strategies, one
training step and timing in alternation. The synthetic catalogue, the roofline and interleaved
timing are kdbench.run.inference_cost's, which `python -m kdbench cost` measures with too.

Every model is randomly initialised (seed 0): the cost of scoring, sampling and a training step
does not depend on what the weights have learnt. The KD pairing is the default one,
BPR:200 -> BPR:20, with the teacher frozen as the runner freezes it (a trainable copy of it for a
strategy that trains the teacher further, as the runner gives one). The training-epoch benchmarks
take the RCE-KD reproduction's pairing instead (BPR:400 -> BPR:20, its settings and hyperparameters)
on synthetic catalogues of real datasets' shapes (EPOCH_SHAPES).
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from kdbench.backbones import BackboneAdapter, build_model
from kdbench.data.loading import TOPK, PreparedData
from kdbench.families import FAMILIES, BackboneSpec, load_data
from kdbench.families.general import GENERAL
from kdbench.run.inference_cost import Roofline, sample_users, time_interleaved, write_synthetic_catalogue  # noqa: F401
from kdbench.strategies import STRATEGIES, DistillationContext, DistillationStrategy
from kdbench.training.loop import TrainSettings, make_optimizer, train_step
from kdbench.training.trajectory import snapshot

# Intra-op threads: one per core this process may use. On a machine that other jobs keep busy,
# KDBENCH_BENCH_THREADS=1 gives steadier figures: a parallel region waits for its slowest thread,
# and a thread that loses its core stalls the whole step for a scheduler slice.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
THREADS = int(os.environ.get("KDBENCH_BENCH_THREADS") or CORES)

# `pytest --benchmark-smoke` (root conftest.py) sets KDBENCH_BENCH_SMOKE=1: every benchmark body
# runs once, untimed, on a tiny synthetic catalogue alone, and the timing loops below make one
# call (pair) each. CI runs it so that a benchmark that raises cannot go unnoticed.
SMOKE = os.environ.get("KDBENCH_BENCH_SMOKE") == "1"

ML100K = "ml-100k"
SYNTHETIC = "synthetic-tiny" if SMOKE else "synthetic-100k"
DATASETS = (SYNTHETIC,) if SMOKE else (ML100K, SYNTHETIC)
# tiny: still more items than the default strategies need outside a user's history (RRD: 540)
# and more users than they need outside an item's (DCD's item side: 100)
SYNTHETIC_SHAPE = ({"n_users": 300, "n_items": 1_000, "per_user": 20} if SMOKE
                   else {"n_users": 10_000, "n_items": 100_000, "per_user": 25})
# Real catalogues' shapes (users x items), synthetic interactions: the validation pass's benchmark
# (test_evaluation.py). Amazon-Beauty has 8.9 interactions a user; the synthetic catalogue needs 20
# for its split, which changes the masked and positive pairs, not the users x items scored.
REAL_SHAPES = {} if SMOKE else {
    "synthetic-citeulike-t": {"n_users": 5_219, "n_items": 25_181, "per_user": 20},
    "synthetic-amazon-beauty": {"n_users": 22_363, "n_items": 12_101, "per_user": 22},
}

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
# Which of them each catalogue's training step times: both on ml-100k; on the large synthetic one
# only the later (the first epoch's step costs the same there but for RD's warm-up).
DATASET_EPOCHS = tuple((dataset, epoch) for dataset in DATASETS for epoch in EPOCHS
                       if dataset == ML100K or epoch == max(EPOCHS))
# on_epoch_start alone: on ml-100k (the smoke run: the tiny catalogue); the training-epoch
# benchmarks time it on catalogues of real datasets' shapes, within the epoch.
EPOCH_START_CASES = tuple(case for case in DATASET_EPOCHS if SMOKE or case[0] == ML100K)

# Catalogues of real datasets' shapes (users, items, interactions), synthetic (`write_shaped_catalogue`),
# for the training-epoch benchmarks: CiteULike-t as kdbench imports it (users of >= 5 items, the RCE-KD
# reproduction's), Amazon-Beauty (RecBole's 5-core). The smoke run takes the tiny catalogue instead.
EPOCH_SHAPES: dict[str, tuple[int, int, int] | None] = (
    {SYNTHETIC: None} if SMOKE
    else {"citeulike-t-shape": (5_219, 25_181, 125_580), "amazon-beauty-shape": (22_363, 12_101, 198_502)}
)
# The reproduction suite's pairing and, per strategy, its hyperparameters and training settings
# (kdbench/suites/reproduce-rcekd-citeulike.yaml); the other strategies run with their defaults.
EPOCH_SUITE = "reproduce-rcekd-citeulike"
# Amazon-Beauty's shape times scratch and the list-wise strategies whose epoch the catalogue's
# shape moves (more users, fewer items); every strategy runs on CiteULike-t's. The feature and
# topology strategies' epochs take minutes on either (their cost is d_t-sized per entity).
SECOND_SHAPE_STRATEGIES = ("scratch", "cd", "cd-student-guided", "kd", "rce-kd", "rrd", "dcd")
EPOCH_TEACHER = BackboneSpec("BPR", 32 if SMOKE else 400)  # the smoke run's bodies need not be costly
EPOCH_STUDENT = BackboneSpec("BPR", 20)
# One past every warm-up phase (RD's dynamic weights start after epoch 10).
EPOCH = 20
# The training-epoch benchmarks time on_epoch_start and the first EPOCH_BATCHES steps of the epoch
# (of 49 on CiteULike-t's shape, 78 on Amazon-Beauty's) and scale the steps to the whole epoch:
# a step costs the same all through an epoch, and DE's or FitNet-MLP's whole epoch takes minutes.
# python -m benchmarks.epoch_breakdown times whole epochs.
EPOCH_BATCHES = 1 if SMOKE else 4

# Figures gathered during the run, printed by conftest.py's terminal summary.
SUMMARY: dict[str, list[dict[str, Any]]] = defaultdict(list)


class TrainingStep:
    """One optimisation step of the student on a fixed batch: kdbench.training.loop.train_step, as fit() takes it."""

    def __init__(self, strategy: DistillationStrategy, batch, settings: TrainSettings = TrainSettings()):
        self.strategy = strategy
        self.student = strategy.context.student
        self.batch = batch
        self.optimizer = make_optimizer(self.student.model, settings, strategy)
        self.student.model.train()

    def __call__(self) -> None:
        train_step(self.student, self.batch, self.optimizer, self.strategy)


def time_calls(fn: Callable[[], Any], budget_s: float = 1.0, min_calls: int = 20,
               max_calls: int = 1000) -> list[float]:
    """Seconds of each of repeated calls of `fn`, for about `budget_s` (at least `min_calls`)."""
    seconds: list[float] = []
    if SMOKE:
        budget_s, min_calls = 0.0, 1
    start = time.perf_counter()
    while len(seconds) < max_calls and (len(seconds) < min_calls or time.perf_counter() - start < budget_s):
        tic = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - tic)
    return seconds


def time_paired(first: Callable[[], Any], second: Callable[[], Any], budget_s: float = 0.5,
                min_pairs: int = 3, max_pairs: int = 1000) -> tuple[list[float], list[float]]:
    """Seconds of calls of `first` and of `second` timed in alternation (AB BA AB ...,
    kdbench.run.inference_cost.time_interleaved) for about `budget_s` (at least `min_pairs` pairs).

    Both see the same load, so the ratio of their medians stays meaningful on a machine whose
    load changes during the run, where separately timed medians would not.
    """
    times: tuple[list[float], list[float]] = ([], [])
    if SMOKE:
        budget_s, min_pairs = 0.0, 1
    start = time.perf_counter()
    while len(times[0]) < max_pairs and (len(times[0]) < min_pairs or time.perf_counter() - start < budget_s):
        a, b = time_interleaved([first, second], 1, first_round=len(times[0]))
        times[0].extend(a)
        times[1].extend(b)
    return times


def fastest_ratio(first: list[float | None], second: list[float | None]) -> float:
    """Fastest call over fastest call. Load on the machine only ever adds time, so the fastest
    call is the estimate of a target's cost that a busy machine disturbs least."""
    return min(s for s in first if s is not None) / min(s for s in second if s is not None)


def median_ratio(first: list[float], second: list[float]) -> float:
    return statistics.median(first) / statistics.median(second)


def run_sized(benchmark, fn: Callable[[], Any], budget_s: float = 1.0, max_rounds: int = 1000,
              trial: bool = True):
    """benchmark.pedantic with rounds sized from one untimed trial call (which also warms up).

    For targets whose cost ranges from microseconds to seconds (a strategy's step or resampling):
    the cheap ones get up to `max_rounds` rounds, a slow one a round or two. Without `trial`, one
    round: for the large catalogue's passes, which take seconds each.
    """
    rounds = 1
    if trial:
        tic = time.perf_counter()
        fn()
        rounds = max(1, min(max_rounds, int(budget_s / max(time.perf_counter() - tic, 1e-9))))
    return benchmark.pedantic(fn, rounds=rounds, iterations=1)


def benchmark_seconds(benchmark, stat: str = "median") -> float | None:
    """A statistic of the benchmark's rounds, or None where timing is off (--benchmark-disable)."""
    return benchmark.stats[stat] if benchmark.stats else None


def strategy_context(strategy_class, data, student: nn.Module, teacher: nn.Module) -> DistillationContext:
    """The context the runner gives `strategy_class`: a trainable copy of the frozen teacher for a
    strategy that trains it further; for HetComp, 4 checkpoints of the same teacher per ensemble
    member (the runner records real trajectories)."""
    if strategy_class.updates_teacher:
        teacher = copy.deepcopy(teacher).train()
        for param in teacher.parameters():
            param.requires_grad_(True)
    context = DistillationContext.build(data, student, teacher, seed=0)
    if strategy_class.needs_trajectories:
        members = 1 + len(strategy_class.ensemble_teachers(strategy_class.resolve_hparams({})))
        context.trajectories = (snapshot(context.teacher, context.history, copies=4),) * members
    return context


class BenchSession:
    """Lazily loaded catalogues and what the benchmarks build on them, shared by the whole run."""

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self._data: dict[str, PreparedData] = {}
        self._models: dict[tuple[str, BackboneSpec], nn.Module] = {}
        self._batches: dict[str, Any] = {}
        self._prepared: dict[tuple, Any] = {}
        self._steps: dict[tuple[str, str], TrainingStep] = {}
        self._started: dict[tuple[str, str], int] = {}  # the epoch each prepared strategy is in

    def data(self, dataset: str) -> PreparedData:
        if dataset not in self._data:
            batch_size = TrainSettings().batch_size
            cache = self.work_dir / "cache"
            if dataset == ML100K:
                self._data[dataset] = load_data(ML100K, batch_size=batch_size, work_dir=cache)
            elif EPOCH_SHAPES.get(dataset):
                root = write_shaped_catalogue(self.work_dir / "atomic", dataset, *EPOCH_SHAPES[dataset])
                batch_size = epoch_settings("scratch").batch_size
                self._data[dataset] = load_data(dataset, str(root), batch_size=batch_size, work_dir=cache)
            else:
                shape = REAL_SHAPES.get(dataset, SYNTHETIC_SHAPE)
                root = write_synthetic_catalogue(self.work_dir / "atomic", dataset, **shape)
                self._data[dataset] = load_data(dataset, str(root), batch_size=batch_size, work_dir=cache)
        return self._data[dataset]

    def info(self, dataset: str) -> dict[str, Any]:
        """extra_info common to every benchmark on `dataset`."""
        data = self.data(dataset)
        return {"dataset": dataset, "n_users": data.n_users, "n_items": data.n_items,
                "torch_threads": torch.get_num_threads(), "cores": CORES}

    def adapter(self, dataset: str, model: nn.Module) -> BackboneAdapter:
        data = self.data(dataset)
        return BackboneAdapter(model, data.uid_field, data.iid_field)

    def training_epoch(self, dataset: str, name: str, batches: int | None = None) -> "TrainingEpoch":
        """A prepared strategy of the reproduction's pairing on `dataset`, ready to run EPOCH, `batches`
        steps a call (None: all) (kept for the run: a second benchmark of it reuses its prepare())."""
        key = ("epoch", dataset, name, batches)
        if key not in self._prepared:
            data = self.data(dataset)
            torch.manual_seed(0)
            student = build_model(EPOCH_STUDENT, data)
            strategy_class = STRATEGIES.get(name)
            context = strategy_context(strategy_class, data, student, self.frozen_model(dataset, EPOCH_TEACHER))
            strategy = strategy_class(context, **epoch_hparams(name)).to("cpu")
            tic = time.perf_counter()
            strategy.prepare()
            self._prepared[key] = TrainingEpoch(strategy, data, epoch_settings(name), time.perf_counter() - tic,
                                                batches)
        return self._prepared[key]

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
        """A fresh student and strategy on the shared frozen teacher (on a trainable copy of it for
        a strategy that trains the teacher further), built as the runner builds them."""
        data = self.data(dataset)
        torch.manual_seed(0)
        student = build_model(STUDENT, data)
        strategy_class = STRATEGIES.get(name)
        return strategy_class(strategy_context(strategy_class, data, student, self.frozen_model(dataset, TEACHER))).to("cpu")

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

    def started(self, dataset: str, name: str, epoch: int) -> None:
        """Record that the prepared strategy has just run on_epoch_start(epoch)."""
        self._started[(dataset, name)] = epoch

    def start_epoch(self, dataset: str, name: str, epoch: int) -> DistillationStrategy:
        """The prepared strategy in `epoch`: on_epoch_start(epoch) unless it is there already
        (resampling on the large catalogue takes seconds; the benchmarks run it once per epoch)."""
        strategy = self.prepared(dataset, name)
        if self._started.get((dataset, name)) != epoch:
            strategy.on_epoch_start(epoch)
            self.started(dataset, name, epoch)
        return strategy

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


def write_shaped_catalogue(root: Path, name: str, n_users: int, n_items: int, n_interactions: int,
                           min_per_user: int = 5, seed: int = 0) -> Path:
    """`root/<name>/<name>.inter` with exactly these counts (RecBole's atomic format); returns `root`.

    Every item is dealt once, round-robin over a random permutation; every user gets
    `min_per_user` uniform items; uniform (user, item) pairs fill the rest; repeats are dropped.
    """
    rng = np.random.default_rng(seed)
    pairs = np.unique(np.concatenate([
        np.arange(n_items) % n_users * n_items + rng.permutation(n_items),
        np.repeat(np.arange(n_users), min_per_user) * n_items + rng.integers(0, n_items, n_users * min_per_user),
    ]))
    while pairs.size < n_interactions:
        extra = np.setdiff1d(rng.integers(0, n_users * n_items, n_interactions, dtype=np.int64), pairs)
        pairs = np.union1d(pairs, rng.permutation(extra)[: n_interactions - pairs.size])
    pairs = rng.permutation(pairs)
    users, items = pairs // n_items, pairs % n_items
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(f"u{user}\ti{item}" for user, item in zip(users.tolist(), items.tolist()))
    (folder / f"{name}.inter").write_text("user_id:token\titem_id:token\n" + rows + "\n")
    return root


def epoch_hparams(name: str) -> dict[str, Any]:
    """The reproduction suite's hyperparameters of `name` ({}: its defaults)."""
    from kdbench.run.suites import load_suite

    return dict(load_suite(EPOCH_SUITE).spec.get("hparams", {}).get(name) or {})


def epoch_settings(name: str) -> TrainSettings:
    """The reproduction suite's training settings of `name` (its `train`, then `strategy_train`)."""
    from kdbench.run.suites import load_suite

    spec = load_suite(EPOCH_SUITE).spec
    return TrainSettings(**(spec["train"] | (spec.get("strategy_train", {}).get(name) or {})))


def trained_general_strategies() -> list[str]:
    """The general family's strategies that train (svd, prune and quant train nothing: 0 epochs)."""
    return [name for name in STRATEGIES.names() if FAMILIES[GENERAL].supports(name) and STRATEGIES.get(name).trains]


def trained_adapter(strategy: DistillationStrategy, data: PreparedData) -> BackboneAdapter:
    """The adapter of the model a run of `strategy` trains, as `fit` builds it: the student, or the
    compressed teacher copy of a compression baseline that replaces it (`model_to_train`: prune-ft
    fine-tunes the pruned 400-dim tables, so its epoch costs a teacher's, not a 20-dim student's)."""
    student = strategy.context.student
    model = strategy.model_to_train(student.model)
    return student if model is student.model else BackboneAdapter(model, data.uid_field, data.iid_field)


class TrainingEpoch:
    """One training epoch as kdbench.training.loop.fit runs it: on_epoch_start(EPOCH), then train_step on
    every batch of the training loader (RecBole samples its negatives as it goes).

    Each call trains the same student further: the cost of an epoch does not depend on how far
    it has come. `start_s` and `steps_s` keep the two parts of each call.
    """

    def __init__(self, strategy: DistillationStrategy, data: PreparedData, settings: TrainSettings,
                 prepare_s: float, batches: int | None = None):
        self.strategy, self.data, self.prepare_s = strategy, data, prepare_s
        self.student = trained_adapter(strategy, data)
        self.optimizer = make_optimizer(self.student.model, settings, strategy)
        self.batches = batches  # steps per call; None: the whole epoch
        self.start_s: list[float] = []
        self.steps_s: list[float] = []

    def __call__(self) -> None:
        self.student.model.train()
        tic = time.perf_counter()
        self.strategy.on_epoch_start(EPOCH)
        self.start_s.append(time.perf_counter() - tic)
        tic = time.perf_counter()
        for number, batch in enumerate(self.data.train):
            if self.batches is not None and number == self.batches:
                break
            train_step(self.student, batch, self.optimizer, self.strategy, epoch=EPOCH)
        self.steps_s.append(time.perf_counter() - tic)

    def epoch_estimate(self, call: int = -1) -> float:
        """Seconds of a whole epoch from call `call`: its start plus its steps scaled to every batch."""
        steps = self.steps_s[call]
        if self.batches is not None:
            steps *= len(self.data.train) / min(self.batches, len(self.data.train))
        return self.start_s[call] + steps


class BPREpochRoofline:
    """The same epoch's work in plain PyTorch: BPR-MF of the student's size on the training pairs,
    shuffled, one uniform negative per pair, batches of the same size, Adam. No data loader, no
    negative check against the user's items, no model class: the least an epoch can cost."""

    def __init__(self, data: PreparedData, dim: int, settings: TrainSettings, seed: int = 0):
        coo = data.history.tocoo()
        self.users = torch.from_numpy(coo.row.astype(np.int64))
        self.items = torch.from_numpy(coo.col.astype(np.int64))
        self.n_items, self.batch_size = data.n_items, settings.batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.user_table = nn.Embedding(data.n_users, dim)
        self.item_table = nn.Embedding(data.n_items, dim)
        params = [self.user_table.weight, self.item_table.weight]
        self.optimizer = torch.optim.Adam(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)

    def __call__(self) -> None:
        order = torch.randperm(len(self.users), generator=self.generator)
        negatives = torch.randint(1, self.n_items, (len(self.users),), generator=self.generator)
        for batch in order.split(self.batch_size):
            user = self.user_table(self.users[batch])
            margin = (user * (self.item_table(self.items[batch]) - self.item_table(negatives[batch]))).sum(dim=1)
            loss = -torch.nn.functional.logsigmoid(margin).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
