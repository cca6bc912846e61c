"""The FedPA model, parts to whole: LoRA → gate → FedPA layer → recommender (docs/design.md §2).

One file, read top to bottom. Every tensor op here broadcasts over optional *leading client
dimensions*: called through ``torch.func.functional_call`` with personalisation tensors stacked as
``[U, ...]`` and inputs shaped ``[U, L, F]``, one forward pass serves U clients at once (the
simulation harness); called plainly with ``[L, F]`` inputs it is one user's on-device model (export).
That is why biases of trainable modules are stored as ``[1, n]`` rows and matrices are applied with
``x @ W.mT`` instead of ``nn.Linear``.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from fedpa.errors import ConfigError

__all__ = [
    "AdapterConfig",
    "Backbone",
    "BackboneConfig",
    "FedPALayer",
    "FedPARecommender",
    "FusedFedPALayer",
    "Gate",
    "LoRA",
    "ParamGroup",
    "PrivateUserEmbedding",
    "external_item_vectors",
    "fuse_layers",
    "parameter_groups",
    "student_config",
    "teacher_config",
]

GateMode = Literal["paper", "residual"]
LoRAInit = Literal["normal", "zero"]


class ParamGroup(StrEnum):
    """Who owns a tensor. The rest of the system selects tensors by these groups, never by name."""

    FROZEN = "frozen"  # backbone, embeddings, head: shipped in the bundle, never trained
    PRIVATE = "private"  # user-level adapter (+ optional user-embedding delta): never leaves the device
    GROUP = "group"  # user-group-level adapters: averaged by the server within one group value
    GATE = "gate"  # adaptive gate: averaged by the server across all reporters


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BackboneConfig:
    """Architecture of a foundation model (teacher) or its on-device student."""

    cardinalities: tuple[int, ...]  # vocabulary size (incl. OOV code 0) of every categorical feature
    n_user_features: int  # the first n columns of x are user features (the rest item features)
    embedding_dim: int = 8
    hidden: tuple[int, ...] = (32, 8)  # the paper's student tower
    # The last n columns are *signal* codes (item-statistic and history buckets, issue 14): ordinal
    # buckets of one number each, so they get a narrower embedding of width signal_dim from their own
    # table. On the student this keeps the first layer, the adapters and the bundle small.
    n_signal_features: int = 0
    signal_dim: int = 4

    def __post_init__(self) -> None:
        if not self.cardinalities or min(self.cardinalities) < 1:
            raise ConfigError(f"cardinalities must be non-empty and ≥ 1, got {self.cardinalities}")
        if not 0 <= self.n_user_features <= len(self.cardinalities):
            raise ConfigError(f"n_user_features={self.n_user_features} out of range")
        if self.embedding_dim < 1 or not self.hidden or min(self.hidden) < 1 or self.signal_dim < 1:
            raise ConfigError(f"bad sizes: embedding_dim={self.embedding_dim}, signal_dim={self.signal_dim}, "
                              f"hidden={self.hidden}")
        if not 0 <= self.n_signal_features <= len(self.cardinalities) - self.n_user_features:
            raise ConfigError(f"n_signal_features={self.n_signal_features} out of range: signal columns are "
                              f"item-side, at most {len(self.cardinalities) - self.n_user_features}")

    @property
    def n_wide_features(self) -> int:
        """Columns embedded at ``embedding_dim`` (all but the signal tail)."""
        return len(self.cardinalities) - self.n_signal_features

    @property
    def input_dim(self) -> int:
        return self.n_wide_features * self.embedding_dim + self.n_signal_features * self.signal_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneConfig:
        return cls(
            cardinalities=tuple(data["cardinalities"]),
            n_user_features=int(data["n_user_features"]),
            embedding_dim=int(data["embedding_dim"]),
            hidden=tuple(data["hidden"]),
            # absent in checkpoints and manifests written before the narrow signal embedding
            n_signal_features=int(data.get("n_signal_features", 0)),
            signal_dim=int(data.get("signal_dim", 4)),
        )


def teacher_config(cardinalities: tuple[int, ...], n_user_features: int) -> BackboneConfig:
    """The default foundation model: clearly larger than the student (≈ 10× its tower).

    It embeds every column at full width: it never ships, so its size does not matter.
    """
    return BackboneConfig(cardinalities, n_user_features, embedding_dim=16, hidden=(256, 128, 64))


def student_config(cardinalities: tuple[int, ...], n_user_features: int, *,
                   n_signal_features: int = 0) -> BackboneConfig:
    """The paper's on-device student: embedding dim 8, hidden layers 32 and 8.

    ``n_signal_features`` trailing statistic columns (``FeatureSchema.n_signal_features``), when
    asked for, are embedded at width 4 from their own table: the first layer, the adapters and the
    bundle shrink (~74 KB), at a cost in GAUC (0.002–0.004 on KuaiRand validation, 0.03 on the
    demo's synthetic data), so the pipeline's default (``fedpa.train.default_student_config``) does
    not ask (docs/RESULTS.md §2b).
    """
    return BackboneConfig(cardinalities, n_user_features, embedding_dim=8, hidden=(32, 8),
                          n_signal_features=n_signal_features, signal_dim=4)


@dataclass(frozen=True)
class AdapterConfig:
    """Personalisation on top of a frozen backbone (docs/design.md §2)."""

    group_attributes: tuple[str, ...]  # user features that define groups, e.g. ("reco_active_level",)
    group_cardinalities: tuple[int, ...]  # number of values (incl. OOV 0) of each grouping attribute
    rank: int = 4
    alpha: float = 8.0  # adapter outputs are scaled by alpha / rank (peft convention)
    gate_mode: GateMode = "paper"
    gate_hidden: int = 8
    lora_init: LoRAInit = "normal"  # "zero" reproduces the research code's dead adapters; never use it
    private_user_embeddings: bool = False  # fine-tune the user's feature embeddings as private tensors
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # free-form notes for manifests

    def __post_init__(self) -> None:
        if len(self.group_attributes) != len(self.group_cardinalities):
            raise ConfigError(
                f"{len(self.group_attributes)} group attributes but "
                f"{len(self.group_cardinalities)} cardinalities"
            )
        if self.rank < 1:
            raise ConfigError(f"rank must be ≥ 1, got {self.rank}")
        if self.gate_mode not in ("paper", "residual"):
            raise ConfigError(f"gate_mode must be 'paper' or 'residual', got {self.gate_mode!r}")
        if self.lora_init not in ("normal", "zero"):
            raise ConfigError(f"lora_init must be 'normal' or 'zero', got {self.lora_init!r}")

    @property
    def n_branches(self) -> int:
        """Gate outputs: paper mode weighs common+user+groups, residual mode only user+groups."""
        k = len(self.group_attributes)
        return 2 + k if self.gate_mode == "paper" else 1 + k

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        data = dict(data)
        data["group_attributes"] = tuple(data["group_attributes"])
        data["group_cardinalities"] = tuple(data["group_cardinalities"])
        return cls(**data)


# ----------------------------------------------------------------------------- backbone


class Backbone(nn.Module):
    """Embeddings → MLP tower → one logit. Teacher and student differ only in their config."""

    offsets: Tensor  # buffers, declared for the type checker
    signal_offsets: Tensor

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        # The wide column whose embedding comes from a runtime ``item_vector`` input instead of the
        # table (its rows are not in it): set only by :func:`external_item_vectors`, for export.
        self.item_column: int | None = None
        # One table for the wide features, one for the signal tail; each feature's codes are
        # shifted by its offset within its table.
        wide, signal = config.cardinalities[:config.n_wide_features], config.cardinalities[config.n_wide_features:]
        self.register_buffer("offsets", torch.tensor([0, *wide[:-1]]).cumsum(0), persistent=False)
        self.embedding = nn.Embedding(sum(wide), config.embedding_dim)
        nn.init.normal_(self.embedding.weight, std=0.05)
        self.signal_embedding: nn.Embedding | None = None
        if signal:
            self.register_buffer("signal_offsets", torch.tensor([0, *signal[:-1]]).cumsum(0), persistent=False)
            self.signal_embedding = nn.Embedding(sum(signal), config.signal_dim)
            nn.init.normal_(self.signal_embedding.weight, std=0.05)
        sizes = (config.input_dim, *config.hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.head = nn.Linear(config.hidden[-1], 1)

    def embed(self, x: Tensor, user_delta: Tensor | None = None, item_vector: Tensor | None = None) -> Tensor:
        """Codes ``[..., F]`` → the first layer's input ``[..., input_dim]``.

        The wide features' embeddings come first (``[..., Fw, d]`` flattened, the user features'
        plus ``user_delta`` ``[..., Fu, d]`` when given), then the signal tail's (``[..., Fs, ds]``).

        On a backbone from :func:`external_item_vectors` the embedding of column ``item_column``
        (the item code) is ``item_vector [..., d]``, supplied per candidate by the caller (the item
        table serves it), and that column's code in ``x`` is ignored; otherwise ``item_vector``
        must be None. Training and the simulation use the plain backbone and its own table.
        """
        n_wide = self.config.n_wide_features
        if self.item_column is not None:
            return self._embed_external(x, user_delta, item_vector)
        if item_vector is not None:
            raise ConfigError("item_vector given, but this backbone embeds the item code from its own table "
                              "(use fedpa.model.external_item_vectors)")
        e = self.embedding((x if self.signal_embedding is None else x[..., :n_wide]) + self.offsets)  # [..., Fw, d]
        if user_delta is not None:
            n = self.config.n_user_features
            e = torch.cat([e[..., :n, :] + user_delta.unsqueeze(-3), e[..., n:, :]], dim=-2)
        h: Tensor = e.flatten(-2)  # [..., Fw*d]
        if self.signal_embedding is None:
            return h
        s: Tensor = self.signal_embedding(x[..., n_wide:] + self.signal_offsets).flatten(-2)  # [..., Fs*ds]
        return torch.cat([h, s], dim=-1)

    def _embed_external(self, x: Tensor, user_delta: Tensor | None, item_vector: Tensor | None) -> Tensor:
        """:meth:`embed` with column ``item_column``'s embedding taken from ``item_vector``."""
        c, n_wide = self.item_column, self.config.n_wide_features
        assert c is not None
        if item_vector is None:
            raise ConfigError(f"this backbone takes the item code's embedding (column {c}) as an item_vector "
                              "input; none was given")
        wide = x[..., :n_wide]
        codes = torch.cat([wide[..., :c], wide[..., c + 1:]], dim=-1)  # [..., Fw-1]: the table's columns
        e = self.embedding(codes + self.offsets)  # [..., Fw-1, d]
        e = torch.cat([e[..., :c, :], item_vector.unsqueeze(-2), e[..., c:, :]], dim=-2)  # [..., Fw, d]
        if user_delta is not None:
            n = self.config.n_user_features
            e = torch.cat([e[..., :n, :] + user_delta.unsqueeze(-3), e[..., n:, :]], dim=-2)
        h: Tensor = e.flatten(-2)
        if self.signal_embedding is None:
            return h
        s: Tensor = self.signal_embedding(x[..., n_wide:] + self.signal_offsets).flatten(-2)
        return torch.cat([h, s], dim=-1)

    def item_rows(self, column: int) -> Tensor:
        """The embedding rows of wide column ``column`` (``[cardinality, d]``, row 0 = its OOV code)."""
        if self.item_column is not None:
            raise ConfigError("this backbone's item rows were removed (external_item_vectors)")
        if not 0 <= column < self.config.n_wide_features:
            raise ConfigError(f"column {column} is not a wide column (0..{self.config.n_wide_features - 1})")
        start = int(self.offsets[column])
        return self.embedding.weight[start:start + self.config.cardinalities[column]]

    def forward(self, x: Tensor, item_vector: Tensor | None = None) -> Tensor:
        h = self.embed(x, item_vector=item_vector)  # [..., input_dim]
        for layer in self.layers:
            h = torch.relu(layer(h))
        logits: Tensor = self.head(h).squeeze(-1)  # [...]
        return logits


def external_item_vectors(backbone: Backbone, column: int) -> Backbone:
    """A copy of ``backbone`` whose wide column ``column`` is embedded from a runtime ``item_vector``.

    Why: the item-code embedding (≤ 2,048 frequent items × d floats) is most of an exported
    program's constants; served per candidate by the item table instead, it leaves the bundle.
    The copy's table lacks that column's rows (``embedding.weight`` is ``cardinality`` rows
    shorter; the other columns' offsets close the gap), so ``embed``/``forward`` need the vector.
    With ``item_vector = backbone.item_rows(column)[x[..., column]]`` it computes what
    ``backbone`` computes (``tests/fedpa/test_model.py`` checks it).
    """
    if backbone.item_column is not None:
        raise ConfigError("the backbone already takes its item vectors as an input")
    backbone.item_rows(column)  # refuses a column that is not a wide one
    out = copy.deepcopy(backbone)
    config = backbone.config
    wide = list(config.cardinalities[:config.n_wide_features])
    start = int(backbone.offsets[column])
    weight = backbone.embedding.weight.detach()
    kept = torch.cat([weight[:start], weight[start + wide[column]:]])
    out.embedding = nn.Embedding(kept.shape[0], config.embedding_dim)
    with torch.no_grad():
        out.embedding.weight.copy_(kept)
    out.embedding.weight.requires_grad_(backbone.embedding.weight.requires_grad)
    rest = wide[:column] + wide[column + 1:]
    out.register_buffer("offsets", torch.tensor([0, *rest[:-1]], dtype=torch.long).cumsum(0)[:len(rest)],
                        persistent=False)
    out.item_column = column
    return out


# ----------------------------------------------------------------------------- adapters


class LoRA(nn.Module):
    """Low-rank branch ``(alpha/r)·B(A x)``; A ~ N(0, 1/in), B = 0 so it starts silent but alive."""

    def __init__(self, in_dim: int, out_dim: int, *, rank: int, alpha: float, init: LoRAInit,
                 role: ParamGroup) -> None:
        super().__init__()
        self.role = role
        self.r = rank
        self.alpha = alpha
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.zeros(rank, in_dim))
        self.lora_B = nn.Parameter(torch.zeros(out_dim, rank))
        if init == "normal":
            # With B = 0 the gradient w.r.t. B is (B-independent) non-zero, so both factors learn;
            # with A = B = 0 (research code) both gradients vanish forever.
            nn.init.normal_(self.lora_A, std=1.0 / math.sqrt(in_dim))

    def forward(self, x: Tensor) -> Tensor:
        return (x @ self.lora_A.mT) @ self.lora_B.mT * self.scale  # [..., L, out]


class Gate(nn.Module):
    """Per-sample branch logits ``G₂ relu(G₁ x)``, shared by all users (docs/design.md §2)."""

    def __init__(self, in_dim: int, n_branches: int, *, hidden: int) -> None:
        super().__init__()
        self.role = ParamGroup.GATE
        self.w1 = nn.Parameter(torch.empty(hidden, in_dim))
        nn.init.kaiming_uniform_(self.w1, a=math.sqrt(5))
        self.b1 = nn.Parameter(torch.zeros(1, hidden))  # [1, n] rows broadcast over client dims
        self.w2 = nn.Parameter(torch.empty(n_branches, hidden))
        nn.init.normal_(self.w2, std=0.01)  # near-uniform branch weights at start
        self.b2 = nn.Parameter(torch.zeros(1, n_branches))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x @ self.w1.mT + self.b1) @ self.w2.mT + self.b2  # [..., L, n_branches]


class FedPALayer(nn.Module):
    """A frozen hidden layer plus user, group and gate branches.

    paper:    π₀·c + π₁·u + Σ_k π_{1+k}·h_k with π = softmax(gate(x))
    residual: c + σ(g₀)·u + Σ_k σ(g_k)·h_k, which equals the backbone exactly while B = 0.
    """

    def __init__(self, base: nn.Linear, config: AdapterConfig) -> None:
        super().__init__()
        self.base = base
        self.gate_mode = config.gate_mode
        def lora(role: ParamGroup) -> LoRA:
            return LoRA(base.in_features, base.out_features, role=role, rank=config.rank, alpha=config.alpha,
                        init=config.lora_init)

        self.user = lora(ParamGroup.PRIVATE)
        self.groups = nn.ModuleDict({a: lora(ParamGroup.GROUP) for a in config.group_attributes})
        self.gate = Gate(base.in_features, config.n_branches, hidden=config.gate_hidden)

    def forward(self, x: Tensor) -> Tensor:
        common = torch.relu(self.base(x))
        branches = [self.user(x), *(g(x) for g in self.groups.values())]
        logits = self.gate(x)  # [..., L, n_branches]
        if self.gate_mode == "paper":
            weights = torch.softmax(logits, dim=-1)
            out = weights[..., 0:1] * common
            for i, branch in enumerate(branches):
                out = out + weights[..., i + 1 : i + 2] * branch
            return out
        weights = torch.sigmoid(logits)
        out = common
        for i, branch in enumerate(branches):
            out = out + weights[..., i : i + 1] * branch
        return out


FusedForm = Literal["program", "batched"]


class FusedFedPALayer(nn.Module):
    """:class:`FedPALayer`'s function with every low-rank branch in one matmul pair.

    Every branch is linear in its own projection and each gate weight is a per-row scalar, so

        Σ_b π_b · s·B_b(A_b x)  =  ((π ⊗ 1_r) ⊙ (x [A_1; …; A_n]ᵀ)) · (s·[B_1 … B_n])ᵀ

    one matmul projects ``x`` onto every branch's A, the gate weights (each spread over its ``r``
    rank columns) scale that small ``[..., L, n·r]`` projection, and one matmul maps it back. Why:
    ranking 256 candidates on a phone, and a round of many clients with few rows each, are bound
    by per-op overhead and passes over ``[..., L, hidden]`` activations, not by arithmetic. It
    adopts the layer's modules, so parameter names are unchanged. Two forms, same values:

    * ``"program"`` (export): the spreading is a matmul with constant 0/1 matrices — no slices of
      the dynamic candidate dimension, which XNNPACK refuses (splitting the graph); ~20% faster.
    * ``"batched"`` (simulation, ``[U, L, F]``): the gate's first layer rides in the same matmul
      as the A's, and the spreading is ``repeat_interleave`` (a cheaper backward).

    ``tests/fedpa/test_model.py`` checks both against :class:`FedPALayer` (values and gradients);
    every export build checks the program against the eager model (golden vectors).
    """

    first: Tensor  # buffers, declared for the type checker
    spread: Tensor

    def __init__(self, layer: FedPALayer, *, form: FusedForm = "program") -> None:
        super().__init__()
        if form not in ("program", "batched"):
            raise ConfigError(f"fused form must be 'program' or 'batched', got {form!r}")
        self.base, self.user, self.groups, self.gate = layer.base, layer.user, layer.groups, layer.gate
        self.gate_mode = layer.gate_mode
        self.form = form
        self.rank, self.scale = layer.user.r, layer.user.scale
        k, r = 1 + len(layer.groups), layer.user.r
        rank_blocks = [torch.ones(1, r)] * k
        if self.gate_mode == "paper":  # branch 0 is the common path, 1..k the adapters
            first = torch.zeros(k + 1, 1)
            first[0, 0] = 1.0
            spread = torch.block_diag(torch.zeros(1, 0), *rank_blocks)  # [k+1, k·r]
        else:
            first = torch.zeros(k, 1)  # unused: residual mode adds the common path unweighted
            spread = torch.block_diag(*rank_blocks)  # [k, k·r]
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("spread", spread, persistent=False)

    @property
    def branches(self) -> tuple[str, ...]:
        """Submodule names of the low-rank branches, in gate order: ``user``, ``groups.<attribute>``…"""
        return ("user", *(f"groups.{a}" for a in self.groups))

    def forward(self, x: Tensor) -> Tensor:
        loras = [self.user, *(cast(LoRA, m) for m in self.groups.values())]
        g = self.gate
        return self.mix(x, [lora.lora_A for lora in loras], [lora.lora_B for lora in loras],
                        (g.w1, g.b1, g.w2, g.b2))

    def mix(self, x: Tensor, lora_A: Sequence[Tensor], lora_B: Sequence[Tensor],
            gate: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
        """The layer on ``x [..., L, in]`` with the given branch tensors (in :attr:`branches` order)
        and gate ``(w1, b1, w2, b2)``; all must share ``x``'s leading client dimensions."""
        w1, b1, w2, b2 = gate
        n_r = self.rank * len(lora_A)
        up = torch.cat(list(lora_B), dim=-1) * self.scale  # [..., out, n·r]
        common = torch.relu(self.base(x))  # the frozen layer: one large matmul for all clients
        if self.form == "batched":
            projected = x @ torch.cat([*lora_A, w1], dim=-2).mT  # [..., L, n·r + gate_hidden]
            logits = torch.relu(projected[..., n_r:] + b1) @ w2.mT + b2  # [..., L, n_branches]
            if self.gate_mode == "paper":
                weights = torch.softmax(logits, dim=-1)
                branch_w, common = weights[..., 1:], weights[..., :1] * common
            else:
                branch_w = torch.sigmoid(logits)
            mixed = projected[..., :n_r] * branch_w.repeat_interleave(self.rank, dim=-1)  # [..., L, n·r]
            return common + mixed @ up.mT
        low = x @ torch.cat(list(lora_A), dim=-2).mT  # [..., L, n·r]
        logits = torch.relu(x @ w1.mT + b1) @ w2.mT + b2  # [..., L, n_branches]
        if self.gate_mode == "paper":
            weights = torch.softmax(logits, dim=-1)
            return (weights @ self.first) * common + ((weights @ self.spread) * low) @ up.mT
        return common + ((torch.sigmoid(logits) @ self.spread) * low) @ up.mT


def fuse_layers(model: FedPARecommender, *, form: FusedForm = "program") -> FedPARecommender:
    """A copy of ``model`` whose FedPA layers are :class:`FusedFedPALayer` (same parameter names)."""
    fused = copy.deepcopy(model)
    for i, layer in enumerate(fused.layers):
        fused.layers[i] = FusedFedPALayer(cast(FedPALayer, layer), form=form)
    return fused


class PrivateUserEmbedding(nn.Module):
    """A private additive delta on the user's feature embeddings (zero at start)."""

    def __init__(self, n_user_features: int, embedding_dim: int) -> None:
        super().__init__()
        self.role = ParamGroup.PRIVATE
        self.delta = nn.Parameter(torch.zeros(n_user_features, embedding_dim))


# ----------------------------------------------------------------------------- whole model


class FedPARecommender(nn.Module):
    """One user's personalised recommender: a frozen backbone with FedPA layers.

    The group adapters held here are the ones of *this user's* group values; the bank of all
    values lives in the shared state (``fedpa.state``), which the server averages per value.
    """

    def __init__(self, backbone: Backbone, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        self.layers = nn.ModuleList(FedPALayer(cast(nn.Linear, base), config) for base in backbone.layers)
        bc = backbone.config
        self.user_embedding = (
            PrivateUserEmbedding(bc.n_user_features, bc.embedding_dim)
            if config.private_user_embeddings else None
        )

    def forward(self, x: Tensor, item_vector: Tensor | None = None) -> Tensor:
        """Logits ``[..., L]``; ``item_vector`` only for a backbone from :func:`external_item_vectors`."""
        delta = None if self.user_embedding is None else self.user_embedding.delta
        h = self.backbone.embed(x, delta, item_vector)  # [..., L, input_dim]
        for layer in self.layers:
            h = layer(h)
        logits: Tensor = self.backbone.head(h).squeeze(-1)  # [..., L]
        return logits


def _roles(model: nn.Module) -> Iterator[tuple[str, nn.Parameter, ParamGroup]]:
    for module_name, module in model.named_modules():
        role = getattr(module, "role", ParamGroup.FROZEN)
        for name, param in module.named_parameters(recurse=False):
            yield (f"{module_name}.{name}" if module_name else name), param, role


def parameter_groups(model: nn.Module) -> dict[ParamGroup, dict[str, nn.Parameter]]:
    """Every parameter of ``model`` by owner group, in registration order.

    Usage: ``trainable = {**groups[ParamGroup.PRIVATE], **groups[ParamGroup.GROUP]}``.
    """
    groups: dict[ParamGroup, dict[str, nn.Parameter]] = {g: {} for g in ParamGroup}
    for name, param, role in _roles(model):
        groups[role][name] = param
    return groups
