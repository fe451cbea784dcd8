"""Post-training quantisation of embedding tables: `quant` quantises the teacher, `ptq` the trained
student (alone: the scratch student; in a composite such as `kd+ptq`: the distilled one).

Per-row symmetric linear quantisation (Jacob et al., "Quantization and Training of Neural Networks
for Efficient Integer-Arithmetic-Only Inference", CVPR 2018, symmetric variant; per-row scales as
for embedding tables in Guan et al., "Post-Training 4-bit Quantization on Embedding Tables",
NeurIPS 2019 workshop): scale_r = max_j |w_rj| / (2^(b-1) - 1), code = round(w / scale_r), b = 8 or
4 (`bits`). Scored dequantised (code * scale: the same scores as integer kernels give up to float
rounding); stored as packed codes (4-bit: two per byte) + one float32 scale per row
(`quantised_bytes`). No calibration data, no training.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from kdbench.errors import KdbenchError
from kdbench.strategies._compression import DeploysCompressedTeacher, frozen_copy, quantise_model
from kdbench.strategies.base import DistillationStrategy, register_strategy

BITS = (8, 4)


def check_bits(name: str, hparams: dict[str, Any]) -> None:
    if hparams.get("bits") not in BITS:
        raise KdbenchError(f"hyperparameter 'bits' of strategy '{name}' must be one of {', '.join(map(str, BITS))}, "
                           f"got {hparams.get('bits')}")


@register_strategy("quant", family="compression",
                   paper="Jacob et al., CVPR 2018; per-row embedding quantisation as in Guan et al., 2019 "
                         "(the teacher, quantised)",
                   backbones=("general",))
class Quant(DeploysCompressedTeacher):
    """The teacher with its embedding tables quantised to `bits` bits per row; 0 epochs."""

    defaults = {"weight": 0.0, "bits": 8}
    search_space = {}

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any], n_users: int, n_items: int) -> None:
        super().check_hparams(hparams, n_users, n_items)
        check_bits(cls.name, hparams)

    def prepare(self) -> None:
        check_bits(self.name, self.hparams)
        self._deployed = [quantise_model(frozen_copy(self.context.teacher.model), self.hparams["bits"])]


@register_strategy("ptq", family="compression",
                   paper="Jacob et al., CVPR 2018; per-row embedding quantisation as in Guan et al., 2019 "
                         "(the trained student, quantised)",
                   backbones=("general",), after_training=True)
class PostTrainingQuant(DistillationStrategy):
    """No loss of its own; the trained student is deployed quantised to `bits` bits per row (with a
    distillation strategy, `kd+ptq`: distil, then quantise). Validation during training (early
    stopping, tuning) scores the float student; the test scores the quantised one."""

    defaults = {"weight": 0.0, "bits": 8}
    search_space = {}
    needs_teacher = False

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any], n_users: int, n_items: int) -> None:
        super().check_hparams(hparams, n_users, n_items)
        check_bits(cls.name, hparams)

    def loss(self, batch) -> None:
        return None

    def compress(self, model: nn.Module) -> nn.Module:
        return quantise_model(frozen_copy(model), self.hparams["bits"])


@register_strategy("quant-int4", family="compression",
                   paper="Jacob et al., CVPR 2018; Guan et al., 2019 (the teacher, quantised to 4 bits)",
                   backbones=("general",))
class QuantInt4(Quant):
    """`quant` at 4 bits (its own row beside int8 in one suite)."""

    defaults = {"weight": 0.0, "bits": 4}


@register_strategy("ptq-int4", family="compression",
                   paper="Jacob et al., CVPR 2018; Guan et al., 2019 (the trained student, quantised to 4 bits)",
                   backbones=("general",), after_training=True)
class PostTrainingQuantInt4(PostTrainingQuant):
    """`ptq` at 4 bits (`kd+ptq-int4`: distil, then quantise to 4 bits)."""

    defaults = {"weight": 0.0, "bits": 4}
