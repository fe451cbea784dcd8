"""Backbones: `MODEL:DIM` specs, building RecBole general and sequential recommenders, and
score/representation adapters.

A sequential backbone's spec may carry options after a second colon: `SASRec:64:L2H2` (2 layers, 2
heads), `GRU4Rec:32:L1` (1 GRU layer); without them RecBole's defaults hold. Its adapter is
`kdbench.sequential.SequentialAdapter`.

Response and ranking KD need only scores, which every RecBole general recommender provides.
Feature KD needs user and item representations; `BackboneAdapter` gives them for the backbones
listed in `REPRESENTATIONS` (BPR, LightGCN, NGCF, NeuMF) and fails early for the others.
"""

from __future__ import annotations

import re
import types
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator

import torch
from torch import nn

from kdbench.errors import KdbenchError, choices

SPEC_PATTERN = re.compile(r"^(?P<model>[A-Za-z][A-Za-z0-9]*)(?::(?P<dim>\d+))?(?::(?P<options>(?:[A-Za-z]\d+)+))?$")
OPTION_PATTERN = re.compile(r"([A-Za-z])(\d+)")


def _neumf_size(dim: int) -> dict[str, Any]:
    return {"mf_embedding_size": dim, "mlp_embedding_size": dim, "mlp_hidden_size": [2 * dim, dim]}


def _sasrec_size(dim: int) -> dict[str, Any]:
    """RecBole's SASRec defaults are hidden 64, feed-forward 256: the 4x ratio is kept."""
    return {"hidden_size": dim, "inner_size": 4 * dim}


def _gru4rec_size(dim: int) -> dict[str, Any]:
    """RecBole's GRU4Rec defaults are item embeddings 64, GRU state 128: the 2x ratio is kept."""
    return {"embedding_size": dim, "hidden_size": 2 * dim}


# How a backbone's size is set; the default is RecBole's `embedding_size`.
SIZE_KEYS: dict[str, Callable[[int], dict[str, Any]]] = {
    "NeuMF": _neumf_size, "SASRec": _sasrec_size, "GRU4Rec": _gru4rec_size,
}
# Spec options per sequential backbone: letter -> RecBole config key (`SASRec:64:L2H2`).
OPTION_KEYS: dict[str, dict[str, str]] = {
    "SASRec": {"L": "n_layers", "H": "n_heads"},
    "GRU4Rec": {"L": "num_layers"},
}
# The sequential recommenders kdbench supports (RecBole's `recbole.model.sequential_recommender`).
SEQUENTIAL_MODELS = ("GRU4Rec", "SASRec")


@lru_cache(maxsize=1)
def general_recommenders() -> tuple[str, ...]:
    import recbole.model.general_recommender as general

    return tuple(sorted(name for name in dir(general) if isinstance(getattr(general, name), type)))


def known_models() -> tuple[str, ...]:
    """Every model a spec may name: RecBole's general recommenders and `SEQUENTIAL_MODELS`."""
    return tuple(sorted(general_recommenders() + SEQUENTIAL_MODELS))


@dataclass(frozen=True)
class BackboneSpec:
    """A RecBole recommender and its embedding dimension, written `BPR:200`; a sequential one may
    add options (`SASRec:64:L2H2`: 2 layers, 2 heads), kept in the order written."""

    model: str
    dim: int
    options: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "BackboneSpec":
        match = SPEC_PATTERN.match(text.strip())
        if not match:
            raise KdbenchError(f"malformed backbone '{text}': expected MODEL:DIM, e.g. BPR:200 or LightGCN:64 "
                               f"(sequential: SASRec:64:L2H2, GRU4Rec:32:L1)")
        known = {name.lower(): name for name in known_models()}
        model = known.get(match["model"].lower())
        if model is None:
            raise KdbenchError(f"unknown model '{match['model']}': valid: {choices(known_models())}")
        dim = int(match["dim"] or 64)
        if dim < 1:
            raise KdbenchError(f"backbone '{text}': the dimension must be a positive integer")
        options = tuple((letter.upper(), int(value)) for letter, value in OPTION_PATTERN.findall(match["options"] or ""))
        valid = OPTION_KEYS.get(model, {})
        for letter, value in options:
            if letter not in valid:
                raise KdbenchError(f"backbone '{text}': unknown option '{letter}' for {model}: valid: "
                                   f"{choices(f'{k} ({v})' for k, v in valid.items()) if valid else 'none'}")
            if value < 1:
                raise KdbenchError(f"backbone '{text}': option '{letter}' must be a positive integer")
        if len({letter for letter, _ in options}) != len(options):
            raise KdbenchError(f"backbone '{text}': an option is given twice")
        heads = dict(options).get("H")
        if model == "SASRec" and dim % (heads or 2):
            raise KdbenchError(f"backbone '{text}': the dimension {dim} must be a multiple of the number of "
                               f"heads ({heads or 2})")
        return cls(model, dim, options)

    @property
    def options_text(self) -> str:
        """The options as written after the size: `L2H2` (empty for none)."""
        return "".join(f"{letter}{value}" for letter, value in self.options)

    def __str__(self) -> str:
        return f"{self.model}:{self.dim}" + (f":{self.options_text}" if self.options else "")

    @property
    def is_sequential(self) -> bool:
        return self.model in SEQUENTIAL_MODELS

    def size_overrides(self) -> dict[str, Any]:
        sizes = SIZE_KEYS.get(self.model, lambda d: {"embedding_size": d})(self.dim)
        keys = OPTION_KEYS.get(self.model, {})
        return sizes | {keys[letter]: value for letter, value in self.options}


def build_model(spec: BackboneSpec, data, device: str = "cpu", extra: dict[str, Any] | None = None,
                init_std: float | None = None) -> nn.Module:
    """Instantiate the RecBole model of `spec` on `data` (a PreparedData). With `init_std`, every
    embedding table is redrawn from N(0, init_std^2) (woriazzc/KDs' MF initialisation) instead of
    the model's own (RecBole's BPR: Xavier normal, std sqrt(2 / (rows + dim)))."""
    from recbole.utils import get_model

    config = _model_config(spec, data, device, extra)
    model = get_model(spec.model)(config, data.train.dataset).to(device)
    if init_std is not None:
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=init_std)
    _compact_adjacency(model)
    return model


def _compact_adjacency(model: nn.Module) -> None:
    """Store a graph model's normalised adjacency compactly; the same matrix, far faster products.

    RecBole builds it as an uncoalesced COO tensor, whose sparse-dense product backpropagates
    about 20x slower on CPU than the coalesced one (LightGCN on ml-100k: 0.68 s vs 0.03 s per
    step here). NGCF's sparse dropout needs COO indices, so it gets the coalesced COO. LightGCN
    only multiplies by it, so it gets CSR and a propagation that uses the matrix's symmetry.
    """
    adjacency = getattr(model, "norm_adj_matrix", None)
    if not isinstance(adjacency, torch.Tensor) or adjacency.layout != torch.sparse_coo:
        return
    adjacency = adjacency.coalesce()
    if type(model).__name__ != "LightGCN":
        model.norm_adj_matrix = adjacency
        return
    transposed = torch.sparse_coo_tensor(adjacency.indices().flip(0), adjacency.values(), adjacency.shape).coalesce()
    if not (torch.equal(transposed.indices(), adjacency.indices())
            and torch.allclose(transposed.values(), adjacency.values())):
        raise RuntimeError("LightGCN's normalised adjacency is expected to be symmetric")
    model.norm_adj_matrix = adjacency.to_sparse_csr()
    model.forward = types.MethodType(_lightgcn_forward, model)


class _SymmetricSparseProduct(torch.autograd.Function):
    """y = A x for a constant symmetric sparse A; the gradient A^T g = A g reuses A's CSR layout.

    torch's own backward for a CSR product transposes A on every call, which made LightGCN's
    step about 8x slower on CPU than this.
    """

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, dense)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, torch.sparse.mm(ctx.adjacency, grad)


def _lightgcn_forward(model) -> tuple[torch.Tensor, torch.Tensor]:
    """RecBole's LightGCN.forward (mean of the layer embeddings), with the symmetric product."""
    layer = model.get_ego_embeddings()
    total = layer
    for _ in range(model.n_layers):
        layer = _SymmetricSparseProduct.apply(model.norm_adj_matrix, layer)
        total = total + layer
    return torch.split(total / (model.n_layers + 1), [model.n_users, model.n_items])


def _model_config(spec: BackboneSpec, data, device: str, extra: dict[str, Any] | None):
    """The model's own RecBole config (its YAML defaults) on the data's settings and protocol."""
    from recbole.config import Config

    from kdbench.data import isolated_argv

    base = {key: data.config[key] for key in _SHARED_KEYS if data.config[key] is not None}
    if spec.is_sequential:  # the sequential protocol's settings (data.SEQUENTIAL_PROTOCOL)
        base |= {key: data.config[key] for key in _SEQUENTIAL_KEYS} | {"train_neg_sample_args": None}
    base.update(spec.size_overrides())
    base.update(extra or {})
    base["use_gpu"] = device.startswith("cuda")
    with isolated_argv():
        config = Config(model=spec.model, dataset=data.name, config_dict=base)
    config["device"] = torch.device(device)
    return config


_SHARED_KEYS = (
    "data_path", "load_col", "eval_args", "metrics", "topk", "valid_metric", "valid_metric_bigger",
    "train_neg_sample_args", "state", "show_progress", "reproducibility", "seed", "checkpoint_dir",
    "log_wandb", "eval_batch_size", "train_batch_size",
)


_SEQUENTIAL_KEYS = ("MAX_ITEM_LIST_LENGTH", "loss_type")


def is_sequential(model: nn.Module) -> bool:
    return type(model).__name__ in SEQUENTIAL_MODELS


def reset_inference_cache(model: nn.Module) -> None:
    """Drop embeddings a model caches for full-sort prediction (LightGCN's restore_user_e ...)."""
    for name in getattr(model, "other_parameter_name", None) or []:
        if hasattr(model, name):
            setattr(model, name, None)


# Representation getters: (model, users, items) -> (user repr (B, d), item repr (..., d)),
# and whole tables for a frozen teacher.
def _mf_tables(model):
    return model.user_embedding.weight, model.item_embedding.weight


def _graph_tables(model):
    return model.forward()


def _neumf_tables(model):
    users = torch.cat([model.user_mf_embedding.weight, model.user_mlp_embedding.weight], dim=1)
    items = torch.cat([model.item_mf_embedding.weight, model.item_mlp_embedding.weight], dim=1)
    return users, items


REPRESENTATIONS: dict[str, Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor]]] = {
    "BPR": _mf_tables,
    "LightGCN": _graph_tables,
    "NGCF": _graph_tables,
    "NeuMF": _neumf_tables,
}
# Backbones whose score is the dot product of the representations above.
DOT_PRODUCT = {"BPR", "LightGCN", "NGCF"}
# Backbones whose forward() takes no input and propagates the whole graph: one call per step.
WHOLE_GRAPH_FORWARD = {"LightGCN", "NGCF"}


class BackboneAdapter:
    """Uniform access to a RecBole model's scores and representations for distillation."""

    def __init__(self, model: nn.Module, uid_field: str, iid_field: str):
        self.model = model
        self.name = type(model).__name__
        self.uid_field = uid_field
        self.iid_field = iid_field

    @property
    def has_representations(self) -> bool:
        return self.name in REPRESENTATIONS

    def require_representations(self, strategy: str) -> None:
        if not self.has_representations:
            raise KdbenchError(
                f"strategy '{strategy}' needs user/item representations, which kdbench provides for "
                f"{choices(REPRESENTATIONS)}; not for {self.name}"
            )

    def representation_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All users' and items' representations (n_users x d, n_items x d)."""
        return REPRESENTATIONS[self.name](self.model)

    def representation_dims(self) -> tuple[int, int]:
        """(user dim, item dim) of the representations."""
        with torch.no_grad():
            users, items = self.representation_tables()
        return users.shape[1], items.shape[1]

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of users (B,) for items (B, M) -> (B, M); differentiable."""
        if self.name in DOT_PRODUCT:
            user_table, item_table = self.representation_tables()
            # Broadcast multiply + sum, not einsum: einsum lowers to B tiny (1 x d)(d x M) bmm's,
            # about 3x slower forward + backward on CPU; the values are the same dot products.
            return (user_table[users].unsqueeze(1) * item_table[items]).sum(dim=-1)
        flat_users = users.unsqueeze(1).expand_as(items).reshape(-1)
        from recbole.data.interaction import Interaction

        batch = Interaction({self.uid_field: flat_users, self.iid_field: items.reshape(-1)})
        return self.model.predict(batch).view(items.shape)

    def interaction_scores(self, interaction) -> torch.Tensor:
        """Scores of an evaluation batch's users for every item (the sequential adapter scores the
        batch's own input sequences instead)."""
        return self.full_scores(interaction[self.uid_field])

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of users (B,) for every item -> (B, n_items), item 0 (padding) included."""
        from recbole.data.interaction import Interaction

        n_items = self.model.n_items
        try:
            scores = self.model.full_sort_predict(Interaction({self.uid_field: users}))
        except NotImplementedError:
            items = torch.arange(n_items, device=users.device).expand(len(users), n_items)
            return self.score(users, items)
        return scores.view(len(users), n_items)

    @contextmanager
    def one_forward_per_step(self) -> Iterator[None]:
        """Within a training step, make whole-graph backbones propagate once, not once per loss.

        LightGCN's calculate_loss calls forward(); a feature/ranking KD loss on the same student
        would call it again. Memoising the call inside the step keeps the KD overhead to the loss
        itself; both losses backpropagate through the same graph.
        """
        if self.name not in WHOLE_GRAPH_FORWARD:
            yield
            return
        original = self.model.forward
        overridden = "forward" in vars(self.model)  # e.g. kdbench's LightGCN propagation
        memo: dict[str, Any] = {}

        def forward_once(*args, **kwargs):
            if args or kwargs:
                return original(*args, **kwargs)
            if "out" not in memo:
                memo["out"] = original()
            return memo["out"]

        self.model.forward = forward_once
        try:
            yield
        finally:
            if overridden:
                self.model.forward = original
            else:
                del self.model.forward


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the deployed model's parameters and buffers."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)
