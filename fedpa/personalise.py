"""Moving personalisation tensors between a FedPA model, the shared bank and a device (torch).

The shared bank (``fedpa.state``) holds group adapters for *every* group value; a model holds one
user's. These helpers are the only code that maps one onto the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from fedpa.model import AdapterConfig, FedPALayer, FedPARecommender, ParamGroup, parameter_groups
from fedpa.state import InitialBank, SharedStateSpec

__all__ = [
    "initial_law",
    "initial_shared_state",
    "load_tensors",
    "read_tensors",
    "shared_state_spec",
    "stored_tensors",
]


def initial_law(model: FedPARecommender, *, seed: int) -> InitialBank:
    """The drawn tensors of this model's initial bank, each with the init law its module uses.

    Bounds keep the model's variances: a group ``lora_A`` (``LoRA``: N(0, 1/in)) is uniform on
    ±√(3/in); the gate's ``w1`` (``Gate``: Kaiming-uniform with a = √5) is uniform on ±1/√in, the
    same law. A ``lora_A`` the model starts at zero (``lora_init="zeros"``) is stored, not drawn.
    """
    pg = parameter_groups(model)
    drawn: dict[str, float] = {}
    for name, p in pg[ParamGroup.GROUP].items():
        if name.endswith(".lora_A") and bool(p.detach().abs().sum() > 0):
            drawn[name] = float(np.float32(math.sqrt(3.0 / p.shape[-1])))
    for name, p in pg[ParamGroup.GATE].items():
        if name.endswith(".w1"):
            drawn[name] = float(np.float32(1.0 / math.sqrt(p.shape[-1])))
    return InitialBank(seed=seed, drawn=drawn)


def shared_state_spec(model: FedPARecommender, *, seed: int = 0) -> SharedStateSpec:
    """The bank layout for this architecture (gate once, each group tensor per group value) and its law."""
    groups = parameter_groups(model)
    config: AdapterConfig = model.config
    owners: dict[int, str] = {}
    for layer in model.modules():
        if not isinstance(layer, FedPALayer):
            continue
        for attribute, lora in layer.groups.items():
            for p in lora.parameters():
                owners[id(p)] = attribute
    return SharedStateSpec.build(
        gate=[(n, tuple(p.shape)) for n, p in groups[ParamGroup.GATE].items()],
        group=[(n, owners[id(p)], tuple(p.shape)) for n, p in groups[ParamGroup.GROUP].items()],
        cardinalities=dict(zip(config.group_attributes, config.group_cardinalities, strict=True)),
        initial=initial_law(model, seed=seed),
    )


def stored_tensors(model: FedPARecommender, spec: SharedStateSpec) -> dict[str, np.ndarray]:
    """The bank's stored part (``shared_state.safetensors``): the model's value of each parameter not drawn."""
    params = {**parameter_groups(model)[ParamGroup.GATE], **parameter_groups(model)[ParamGroup.GROUP]}
    return {n: params[n].detach().numpy().astype(np.float32) for n in spec.stored_names}


def initial_shared_state(model: FedPARecommender, *, seed: int) -> dict[str, np.ndarray]:
    """A fresh bank: drawn tensors from ``seed`` (a different draw per group value), the rest as the model's."""
    spec = shared_state_spec(model, seed=seed)
    return spec.initial_bank(stored_tensors(model, spec))


def read_tensors(model: FedPARecommender, *groups: ParamGroup) -> dict[str, np.ndarray]:
    """Copies of the model's tensors of the given owner groups, by parameter name."""
    pg = parameter_groups(model)
    return {n: p.detach().cpu().numpy().copy() for g in groups for n, p in pg[g].items()}


def load_tensors(model: FedPARecommender, tensors: Mapping[str, np.ndarray]) -> None:
    """Write tensors (by parameter name) into the model in place; refuses frozen or unknown names."""
    pg = parameter_groups(model)
    trainable = {n: p for g in (ParamGroup.PRIVATE, ParamGroup.GROUP, ParamGroup.GATE) for n, p in pg[g].items()}
    unknown = sorted(set(tensors) - set(trainable))
    if unknown:
        raise KeyError(f"not personalisation tensors of this model: {unknown[:5]}")
    with torch.no_grad():
        for name, value in tensors.items():
            target = trainable[name]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"{name}: shape {tuple(value.shape)} != model's {tuple(target.shape)}")
            target.copy_(torch.as_tensor(np.asarray(value), dtype=target.dtype))
