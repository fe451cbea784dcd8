"""What autograd's anomaly mode (which RecBole's sequential models switch on when imported, see
`kdbench.compat.kept_anomaly_mode`) costs a sequential training step, and that it changes no value.

    python -m benchmarks.anomaly_mode DATASET SPEC STEPS     # e.g. amazon-beauty SASRec:64:L2H2 4

One thread. The speed: the first STEPS batches of an epoch trained with the mode on, then off, twice
over (each round sees the same load), `kdbench.training.loop.train_step` as `fit` runs it; the best
of the two rounds per step. The values: two fresh models of the same seed trained on the same
batches, one with the mode and one without, compared weight by weight. Prints a Markdown row.
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from kdbench.backbones import BackboneAdapter, build_model
from kdbench.families import BackboneSpec, load_data
from kdbench.training.loop import TrainSettings, make_optimizer, train_step

SETTINGS = TrainSettings(learning_rate=0.005, batch_size=2048, max_epochs=1, patience=3)


def fresh_run(data, spec: BackboneSpec) -> tuple[BackboneAdapter, torch.optim.Optimizer]:
    """A new `spec` model in training mode, as `fit` holds it, and its optimiser."""
    model = build_model(spec, data)
    model.train()
    return BackboneAdapter(model, data.uid_field, data.iid_field), make_optimizer(model, SETTINGS, None)


def trained(data, spec: BackboneSpec, batches: list, anomaly: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """The weights of a fresh `spec` model after `batches`, with anomaly mode `anomaly`."""
    torch.manual_seed(seed)
    adapter, optimizer = fresh_run(data, spec)
    torch.manual_seed(seed + 1)  # dropout
    with torch.autograd.set_detect_anomaly(anomaly):
        for batch in batches:
            train_step(adapter, batch, optimizer)
    return {name: value.clone() for name, value in adapter.model.state_dict().items()}


def timed(data, spec: BackboneSpec, batches: list) -> tuple[float, float]:
    """Best seconds per step of two rounds with the mode on, then off, on one model (a warm-up step first)."""
    adapter, optimizer = fresh_run(data, spec)
    train_step(adapter, batches[0], optimizer)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(2):
        for anomaly in (True, False):
            with torch.autograd.set_detect_anomaly(anomaly):
                tic = time.perf_counter()
                for batch in batches:
                    train_step(adapter, batch, optimizer)
                seconds[anomaly].append((time.perf_counter() - tic) / len(batches))
    return min(seconds[True]), min(seconds[False])


def main(dataset: str, spec_text: str, steps: int) -> None:
    torch.set_num_threads(1)
    spec = BackboneSpec.parse(spec_text)
    data = load_data(dataset, model=spec.model, work_dir=tempfile.mkdtemp(prefix="kdbench-anomaly-"),
                     protocol="leave-one-out")
    batches = [batch for _, batch in zip(range(steps), data.train)]
    with_weights, without_weights = trained(data, spec, batches, True), trained(data, spec, batches, False)
    same = all(torch.equal(with_weights[name], without_weights[name]) for name in with_weights)
    with_mode, without = timed(data, spec, batches)
    print(f"| {dataset} | {spec_text} | {len(data.train)} | {with_mode:.3f} | {without:.3f} | "
          f"{with_mode / without:.2f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
