"""DE's expert mix (shared by DE, HTD and PCKD) on CiteULike-t-sized shapes, with the gate weights as
the softmax gives them and as `gate_weights` cuts them (below 2^-46 set to 0).

Thirty experts of 20 -> 210 -> 400 (the RCE-KD reproduction's BPR:400 -> BPR:20 pairing, DE's
published 30 experts) on 2,000 entities, forward and backward, at the annealed temperatures of a
soft, a half-hard and a hard selection. Left raw, the near-zero weights are subnormal floats, whose
arithmetic is an order of magnitude slower on x86 CPUs, and they keep their experts in the mix:
`ratio_raw_to_cut` in the extra info. Group: `expert mix` (the smoke run: 200 entities, id synthetic-tiny).
"""

from __future__ import annotations

import pytest

from benchmarks._support import SMOKE, SYNTHETIC, benchmark_seconds, run_sized

SHAPE = SYNTHETIC if SMOKE else "citeulike-t-shape"  # the smoke run's bodies on a tiny case
ENTITIES = 200 if SMOKE else 2000
TIMES: dict[tuple[float, str], float | None] = {}


def _case(temperature: float, cut: bool):
    import torch

    from kdbench.strategies.de import ExpertBank, gate_weights, gumbel_noise, mix_experts

    torch.manual_seed(0)
    bank = ExpertBank(30, 20, 210, 400)
    x = torch.randn(ENTITIES, 20, requires_grad=True)
    teacher = torch.randn(ENTITIES, 400)
    logits = torch.randn(ENTITIES, 30) * 3
    gumbel = gumbel_noise((ENTITIES, 30), torch.Generator().manual_seed(0))
    alpha = (gate_weights(logits, temperature, gumbel) if cut
             else torch.softmax((torch.log_softmax(logits, dim=-1) + gumbel) / temperature, dim=-1))

    def step():
        bank.zero_grad(set_to_none=True)
        x.grad = None
        (teacher - mix_experts(bank, x, alpha)).pow(2).sum().backward()

    return step, float((alpha != 0).float().mean()), float(((alpha > 0) & (alpha < 2.0**-126)).float().mean())


@pytest.mark.parametrize("gates", ["raw", "cut"])
@pytest.mark.parametrize("temperature", [1.0, 0.05, 0.003])
@pytest.mark.parametrize("shape", [SHAPE])
def test_expert_mix(benchmark, shape, temperature, gates):
    step, nonzero, subnormal = _case(temperature, gates == "cut")
    benchmark.group = "expert mix"
    run_sized(benchmark, step, budget_s=2.0, max_rounds=20)
    TIMES[temperature, gates] = benchmark_seconds(benchmark)
    info = {"shape": shape, "entities": ENTITIES, "temperature": temperature, "gates": gates, "nonzero_share": nonzero, "subnormal_share": subnormal}
    raw, cut = TIMES.get((temperature, "raw")), TIMES.get((temperature, "cut"))
    if gates == "cut" and raw and cut:
        info["ratio_raw_to_cut"] = raw / cut
    benchmark.extra_info.update(info)
