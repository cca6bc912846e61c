"""Moving personalisation tensors between a FedPA model, the shared bank and a device (torch).

The shared bank (``fedpa.state``) holds group adapters for *every* group value; a model holds one
user's. These helpers are the only code that maps one onto the other.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from fedpa.model import AdapterConfig, FedPALayer, FedPARecommender, ParamGroup, parameter_groups
from fedpa.state import SharedStateSpec

__all__ = [
    "initial_shared_state",
    "load_tensors",
    "read_tensors",
    "shared_state_spec",
]


def shared_state_spec(model: FedPARecommender) -> SharedStateSpec:
    """The bank layout for this architecture: gate once, each group tensor per group value."""
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
    )


def initial_shared_state(model: FedPARecommender, *, seed: int) -> dict[str, np.ndarray]:
    """A fresh bank: the model's gate, and for each group value an independently initialised adapter."""
    spec = shared_state_spec(model)
    generator = torch.Generator().manual_seed(seed)
    params = {**parameter_groups(model)[ParamGroup.GATE], **parameter_groups(model)[ParamGroup.GROUP]}
    bank: dict[str, np.ndarray] = {}
    for t in spec.tensors:
        base = params[t.param].detach()
        if t.role == "group" and t.param.endswith("lora_A") and base.abs().sum() > 0:
            # same init law as LoRA (N(0, 1/in)), a different draw per group value
            value = torch.randn(t.shape, generator=generator) / np.sqrt(t.shape[-1])
        else:
            value = base.clone()
        bank[t.name] = value.numpy().astype(np.float32)
    return bank


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
