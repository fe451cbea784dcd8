"""Backbones: what kdbench knows about each RecBole model, building one at its size, and the
score/representation adapter through which strategies and the evaluator see it.

Per-model knowledge is one `ModelCard` per model (timm's one-config-record-per-model), declared by
the model's family (`kdbench.families.general`, `kdbench.families.sequential`) and registered in
`MODELS`: how its size is set, its spec options, its user/item representations, whether its score
is their dot product, whether its forward propagates the whole graph, and how many embedding
tables it keeps per row. A RecBole general recommender without a card gets the default one
(RecBole's `embedding_size`, no representations, scores through `predict`).

Response and ranking KD need only scores, which every RecBole recommender provides. Feature KD
needs user and item representations; `BackboneAdapter` gives them for the models whose card
declares them (`REPRESENTATIONS`) and fails early for the others. The spec `MODEL:DIM[:OPTIONS]`
(`kdbench.families.BackboneSpec`) and the family's own adapters live with the families.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import torch
from torch import nn

from kdbench.compat import kept_anomaly_mode
from kdbench.errors import KdbenchError, choices
from kdbench.registry import Registry

Tables = Callable[[nn.Module], "tuple[torch.Tensor, torch.Tensor]"]


def embedding_size(dim: int) -> dict[str, Any]:
    """RecBole's size key for most models."""
    return {"embedding_size": dim}


@dataclass(frozen=True)
class ModelCard:
    """What kdbench knows about one RecBole model. `sizes`: DIM -> RecBole config keys; `options`:
    spec option letter -> RecBole config key (`SASRec:64:L2H2`); `check`: (dim, options) -> the
    problem with a spec, or None; `representations`: model -> (user/query table, item table);
    `dot_product`: the score is the dot product of those; `whole_graph_forward`: forward() takes no
    input and propagates the whole graph (one call per training step suffices); `tables_per_row`:
    embedding tables per user and item (the memory estimate)."""

    name: str
    sizes: Callable[[int], dict[str, Any]] = embedding_size
    options: Mapping[str, str] = field(default_factory=dict)
    check: Callable[[int, dict[str, int]], str | None] | None = None
    representations: Tables | None = None
    dot_product: bool = False
    whole_graph_forward: bool = False
    tables_per_row: int = 1

    def size_overrides(self, dim: int, options: tuple[tuple[str, int], ...] = ()) -> dict[str, Any]:
        """The RecBole config keys of a spec: its size, then its options."""
        return self.sizes(dim) | {self.options[letter]: value for letter, value in options}


MODELS: Registry[ModelCard] = Registry("backbone model")


def model_card(name: str) -> ModelCard:
    """The registered card of a model, or the default one (a plain RecBole general recommender)."""
    return MODELS.get(name) if name in MODELS else ModelCard(name)


class _CardView(Mapping):
    """Names of the registered models whose card has `attribute` set, read live from `MODELS`:
    for the modules that test a model by name (`adapter.name in DOT_PRODUCT`)."""

    def __init__(self, attribute: str):
        self.attribute = attribute

    def _cards(self) -> dict[str, Any]:
        values = {card.name: getattr(card, self.attribute) for card in MODELS.values()}
        return {name: value for name, value in values.items() if value}

    def __getitem__(self, name: str) -> Any:
        return self._cards()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cards())

    def __len__(self) -> int:
        return len(self._cards())


REPRESENTATIONS: Mapping[str, Tables] = _CardView("representations")
DOT_PRODUCT: Mapping[str, bool] = _CardView("dot_product")
OPTION_KEYS: Mapping[str, Mapping[str, str]] = _CardView("options")


class ModelSpec(Protocol):
    """What `build_model` needs of a spec (`kdbench.families.BackboneSpec`)."""

    model: str

    def model_settings(self, data_config) -> dict[str, Any]:
        """The RecBole config keys of the model's family and size."""


def recbole_model_class(name: str) -> type:
    """RecBole's model class `name`, autograd's anomaly mode kept (`compat.kept_anomaly_mode`)."""
    from recbole.utils import get_model

    with kept_anomaly_mode():
        return get_model(name)


def build_model(spec: ModelSpec, data, device: str = "cpu", extra: dict[str, Any] | None = None,
                init_std: float | None = None) -> nn.Module:
    """Instantiate the RecBole model of `spec` on `data` (a PreparedData). With `init_std`, every
    embedding table is redrawn from N(0, init_std^2) (woriazzc/KDs' MF initialisation) instead of
    the model's own (RecBole's BPR: Xavier normal, std sqrt(2 / (rows + dim)))."""
    config = _model_config(spec, data, device, extra)
    model = recbole_model_class(spec.model)(config, data.train.dataset).to(device)
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


def _model_config(spec: ModelSpec, data, device: str, extra: dict[str, Any] | None):
    """The model's own RecBole config (its YAML defaults) on the data's settings and protocol,
    the family's settings (the sequential protocol's, say) and the spec's size."""
    from recbole.config import Config

    from kdbench.data.loading import isolated_argv

    base = {key: data.config[key] for key in _SHARED_KEYS if data.config[key] is not None}
    base.update(spec.model_settings(data.config))
    base.update(extra or {})
    base["use_gpu"] = device.startswith("cuda")
    with isolated_argv(), kept_anomaly_mode():
        config = Config(model=spec.model, dataset=data.name, config_dict=base)
    config["device"] = torch.device(device)
    return config


_SHARED_KEYS = (
    "data_path", "load_col", "eval_args", "metrics", "topk", "valid_metric", "valid_metric_bigger",
    "train_neg_sample_args", "state", "show_progress", "reproducibility", "seed", "checkpoint_dir",
    "log_wandb", "eval_batch_size", "train_batch_size",
)


def reset_inference_cache(model: nn.Module) -> None:
    """Drop embeddings a model caches for full-sort prediction (LightGCN's restore_user_e ...)."""
    for name in getattr(model, "other_parameter_name", None) or []:
        if hasattr(model, name):
            setattr(model, name, None)


class BackboneAdapter:
    """Uniform access to a RecBole model's scores and representations for distillation."""

    def __init__(self, model: nn.Module, uid_field: str, iid_field: str):
        self.model = model
        self.name = type(model).__name__
        self.card = model_card(self.name)
        self.uid_field = uid_field
        self.iid_field = iid_field

    @property
    def has_representations(self) -> bool:
        return self.card.representations is not None

    def require_representations(self, strategy: str) -> None:
        if not self.has_representations:
            raise KdbenchError(
                f"strategy '{strategy}' needs user/item representations, which kdbench provides for "
                f"{choices(REPRESENTATIONS)}; not for {self.name}"
            )

    def representation_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All users' and items' representations (n_users x d, n_items x d)."""
        return self.card.representations(self.model)

    def representation_dims(self) -> tuple[int, int]:
        """(user dim, item dim) of the representations."""
        with torch.no_grad():
            users, items = self.representation_tables()
        return users.shape[1], items.shape[1]

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of users (B,) for items (B, M) -> (B, M); differentiable."""
        if self.card.dot_product:
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
        if not self.card.whole_graph_forward:
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


# A compressed model (kdbench.strategies' compression baselines) is scored through dense, dequantised
# or zero-filled tables but deployed in another format: its `DEPLOYED` attribute, a dict, holds that
# format's `params` (weights stored), `size_bytes`, `format` and `kernel` (what `cost` times).
DEPLOYED = "kdbench_deployed"


def count_parameters(model: nn.Module) -> int:
    """Weights stored: all parameters, or a compressed model's kept ones (`DEPLOYED`)."""
    deployed = getattr(model, DEPLOYED, None)
    if deployed is not None:
        return int(deployed["params"])
    return sum(p.numel() for p in model.parameters())


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the deployed model: its parameters and buffers (dense float32: 4 bytes a parameter),
    or a compressed model's format (`DEPLOYED`: CSR, packed integer codes and scales)."""
    deployed = getattr(model, DEPLOYED, None)
    if deployed is not None:
        return int(deployed["size_bytes"])
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)
