"""The methods of the results table (docs/design.md §8), each as a parameterisation of one harness.

Every trainable method is a :class:`Program`: a batched forward, the private tensors each client
keeps, and the shared bank the server averages. The baselines are built from the same
``FedPARecommender`` by choosing which tensors exist, train, and travel:

==================== ======================================================================
``fm-only``           the distilled student as is, no adaptation
``user-ctr``          score = the user's click rate on its own train split (GAUC 0.5 by design)
``local-only``        private user LoRA only, never federated
``fedavg-full``       FedAvg of the whole student (embeddings, tower, head): a copy per client
``fedavg-lora``       one global LoRA averaged over all clients (no private part, no gate)
``global-private-lora`` FedDPA-style: global LoRA (shared) + private LoRA + shared gate
``fedpa-paper``       FedPA as published: softmax gate, attribute-group adapters, private LoRA
``fedpa-zero-init``   ``fedpa-paper`` with the research code's A = B = 0 (dead adapters)
``fedpa``             our variant: residual gate (the model starts as the student exactly)
==================== ======================================================================

"No gate" is a residual-mode gate frozen at ``w₂ = 0, b₂ = 0``: every branch is weighted by
σ(0) = ½ on every sample, and ``alpha`` is doubled so the branch is exactly ``(alpha/r)·B A x`` —
a plain LoRA, with no model change needed. A global LoRA is a group adapter of an attribute with a
single value that every client has.

Usage: ``program = build_program(get_method("fedpa", lr=0.3), student, ds.schema, groups, seed=0)``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

from fedpa.errors import ConfigError
from fedpa.model import AdapterConfig, Backbone, FedPARecommender, Gate, ParamGroup, parameter_groups
from fedpa.personalise import initial_shared_state, shared_state_spec
from fedpa.schedule import LocalTraining
from fedpa.sim.engine import Forward
from fedpa.sim.fused import FusedForward
from fedpa.state import SharedStateSpec

if TYPE_CHECKING:
    from fedpa.data import FeatureSchema

__all__ = ["METHODS", "Method", "Program", "build_program", "get_method"]

GLOBAL = "global"  # the one-valued pseudo attribute of a global LoRA


@dataclass(frozen=True)
class Method:
    """One row of the results table: which tensors exist, which train, which are shared."""

    name: str
    summary: str
    kind: Literal["static", "adapter", "full"] = "adapter"
    gate_mode: Literal["paper", "residual"] = "residual"
    lora_init: Literal["normal", "zero"] = "normal"
    rank: int = 4
    alpha: float = 8.0
    groups: Literal["attributes", "global", "none"] = "attributes"
    group_attributes: tuple[str, ...] | None = None  # None: the dataset schema's grouping attributes
    user_adapter: bool = True  # a private user LoRA that trains
    gate: Literal["shared", "private", "off"] = "shared"
    user_embeddings: bool = False  # private delta on the user's feature embeddings
    # the method's tuned client learning rate (validation, docs/simulation.md): an explicit override of
    # LocalTraining.lr (1.0, the device's), used by the simulation's LocalTraining
    lr: float = 0.1
    batch_size: int = LocalTraining.batch_size  # the device's

    def __post_init__(self) -> None:
        if self.gate == "off" and self.gate_mode != "residual":
            raise ConfigError(f"{self.name}: gate='off' needs gate_mode='residual'")
        if self.rank < 1:
            raise ConfigError(f"{self.name}: rank must be ≥ 1, got {self.rank}")
        LocalTraining(lr=self.lr, batch_size=self.batch_size)  # the one validation of local-training settings


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("fm-only", "distilled student, no adaptation", kind="static"),
    Method("user-ctr", "the user's train click rate as the score", kind="static"),
    Method("local-only", "private LoRA, no federation", groups="none", gate="off"),
    Method("fedavg-full", "FedAvg fine-tuning of the whole student", kind="full", lr=0.1),
    Method("fedavg-lora", "one global LoRA (FedAvg)", groups="global", user_adapter=False, gate="off"),
    Method("global-private-lora", "global + private LoRA with a shared gate (FedDPA-style)", groups="global"),
    Method("fedpa-paper", "FedPA as published: softmax gate, attribute groups", gate_mode="paper"),
    Method("fedpa-zero-init", "fedpa-paper with the research code's zero-initialised adapters",
           gate_mode="paper", lora_init="zero"),
    Method("fedpa", "ours: residual gate, attribute groups, private LoRA"),
)}


def get_method(name: str, **overrides: Any) -> Method:
    """A registered method, optionally with fields replaced (e.g. a tuned ``lr``)."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return dataclasses.replace(METHODS[name], **overrides) if overrides else METHODS[name]


@dataclass
class Program:
    """A trainable method, ready for :class:`fedpa.sim.engine.Population` and ``local_train``."""

    forward: Forward
    private_init: dict[str, Tensor]  # every client starts from these (persisted per client)
    spec: SharedStateSpec | None  # the shared tensors (None: nothing is federated)
    bank: dict[str, np.ndarray]  # initial shared state, wire names
    group_values: dict[str, np.ndarray]  # attribute → each client's value, [C]
    module: torch.nn.Module  # the single-user model the batched forward stands for (same tensor names)

    @property
    def private_floats(self) -> int:
        return sum(int(v.numel()) for v in self.private_init.values())


def _attributes(method: Method, schema: FeatureSchema, user_groups: np.ndarray
                ) -> tuple[tuple[str, ...], tuple[int, ...], dict[str, np.ndarray]]:
    n = user_groups.shape[0]
    if method.groups == "none":
        return (), (), {}
    if method.groups == "global":
        return (GLOBAL,), (1,), {GLOBAL: np.zeros(n, np.int64)}
    known = tuple(schema.group_attributes)
    wanted = method.group_attributes if method.group_attributes is not None else known
    missing = [a for a in wanted if a not in known]
    if missing:
        raise ConfigError(f"{method.name}: group attributes {missing} are not the dataset's {known}")
    cards = schema.cardinalities
    pos = dict(zip(known, schema.group_positions, strict=True))
    col = {a: i for i, a in enumerate(known)}
    return (wanted, tuple(cards[pos[a]] for a in wanted),
            {a: np.asarray(user_groups[:, col[a]], np.int64) for a in wanted})


def _adapter_program(method: Method, student: Backbone, schema: FeatureSchema, user_groups: np.ndarray,
                     seed: int, fused: bool) -> Program:
    attributes, cards, values = _attributes(method, schema, user_groups)
    alpha = method.alpha * (2.0 if method.gate == "off" else 1.0)  # σ(0) = ½ on every branch
    config = AdapterConfig(group_attributes=attributes, group_cardinalities=cards, rank=method.rank, alpha=alpha,
                           gate_mode=method.gate_mode, lora_init=method.lora_init,
                           private_user_embeddings=method.user_embeddings)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = FedPARecommender(copy.deepcopy(student), config)
    model.requires_grad_(False)  # the engine trains its own batched copies, never these
    groups = parameter_groups(model)
    if method.gate == "off":
        with torch.no_grad():
            for gate in (m for m in model.modules() if isinstance(m, Gate)):  # one per layer
                gate.w2.zero_()
                gate.b2.zero_()
    private: dict[str, Tensor] = {}
    for name, p in groups[ParamGroup.PRIVATE].items():
        if method.user_adapter or name.startswith("user_embedding"):
            private[name] = p.detach().clone()
    if method.gate == "private":
        private.update({n: p.detach().clone() for n, p in groups[ParamGroup.GATE].items()})
    shared = set(groups[ParamGroup.GROUP])
    if method.gate == "shared":
        shared |= set(groups[ParamGroup.GATE])
    spec = None
    bank: dict[str, np.ndarray] = {}
    if shared:
        full = shared_state_spec(model)
        spec = SharedStateSpec(tensors=tuple(t for t in full.tensors if t.param in shared))
        initial = initial_shared_state(model, seed=seed)
        bank = {t.name: initial[t.name] for t in spec.tensors}

    def forward(params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        logits: Tensor = functional_call(model, dict(params), (x,))
        return logits

    if fused:
        forward = FusedForward(model)  # same function, fewer passes
    return Program(forward=forward, private_init=private, spec=spec, bank=bank, group_values=values, module=model)


def _full_program(student: Backbone) -> Program:
    """FedAvg of every student tensor; the forward indexes a per-client embedding table."""
    model = copy.deepcopy(student).requires_grad_(False)
    n_layers, n_wide = len(model.layers), model.config.n_wide_features
    # (table, its code offsets, its columns): the wide table, then the narrow signal table if any
    tables = [("embedding.weight", model.get_buffer("offsets"), slice(0, n_wide))]
    if model.signal_embedding is not None:
        tables.append(("signal_embedding.weight", model.get_buffer("signal_offsets"), slice(n_wide, None)))

    def lookup(table: Tensor, codes: Tensor) -> Tensor:
        # table [U, V, d]: one per client, or [V, d] shared by all → [U, L, F*d]
        if table.dim() == 2:
            return table[codes].flatten(-2)
        return table[torch.arange(codes.shape[0]).view(-1, 1, 1), codes].flatten(-2)

    def forward(params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        h = torch.cat([lookup(params[name], x[..., cols] + offsets) for name, offsets, cols in tables],
                      dim=-1)  # [U, L, input_dim], the layout of Backbone.embed
        for i in range(n_layers):
            h = torch.relu(h @ params[f"layers.{i}.weight"].mT + params[f"layers.{i}.bias"].unsqueeze(-2))
        return (h @ params["head.weight"].mT + params["head.bias"].unsqueeze(-2)).squeeze(-1)  # [U, L]

    tensors = dict(model.named_parameters())
    spec = SharedStateSpec.build(gate=[(n, tuple(p.shape)) for n, p in tensors.items()], group=[], cardinalities={})
    bank = {n: p.detach().numpy().astype(np.float32).copy() for n, p in tensors.items()}
    return Program(forward=forward, private_init={}, spec=spec, bank=bank, group_values={}, module=model)


def build_program(method: Method, student: Backbone, schema: FeatureSchema, user_groups: np.ndarray, *,
                  seed: int, fused: bool = True) -> Program:
    """The batched program of a trainable method; ``user_groups[c]`` are client ``c``'s group codes.

    ``fused=False`` runs the model's own forward through ``functional_call`` (the reference).
    """
    if method.kind == "static":
        raise ConfigError(f"{method.name} has no trainable program (it is scored directly)")
    if method.kind == "full":
        return _full_program(student)
    return _adapter_program(method, student, schema, np.asarray(user_groups), seed, fused)
