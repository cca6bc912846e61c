"""``FedPARecommender.forward`` for ``[U, L, F]`` inputs, through the model's fused layers.

Why: with many clients and few rows each, the batched forward is bound by per-client matrix
overhead and by passes over ``[U, L, hidden]`` activations, not by arithmetic. The layer itself is
:class:`fedpa.model.FusedFedPALayer` in its ``"batched"`` form (the identity and its parity test
live there); what this module adds is taking each client's tensors from a ``{name: [U, ...]}``
mapping instead of ``functional_call``'s module swap, broadcasting tensors shared by every client
(passed without the client dimension, as in evaluation) as views. ``tests/fedpa/sim/test_fused.py``
checks the whole forward against the model for every method.

Usage: ``forward = FusedForward(model)``; ``logits = forward(params, x)`` with ``x`` ``[U, L, F]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from torch import Tensor

from fedpa.model import FedPALayer, FedPARecommender, FusedFedPALayer

__all__ = ["FusedForward"]

_GATE = ("w1", "b1", "w2", "b2")


class FusedForward:
    """A batched forward equal to ``functional_call(model, params, (x,))`` for 3-D ``x``."""

    def __init__(self, model: FedPARecommender) -> None:
        self.model = model
        self.own = dict(model.named_parameters())  # tensors not passed in come from the model
        self.layers = [(f"layers.{i}", FusedFedPALayer(cast(FedPALayer, layer), form="batched"))
                       for i, layer in enumerate(model.layers)]

    def _get(self, params: Mapping[str, Tensor], name: str, lead: int) -> Tensor:
        t = params.get(name)
        if t is None:
            t = self.own[name]
        # shared-by-all tensors arrive without the client dimension: broadcast them (a view)
        return t if t.dim() == self.own[name].dim() + 1 else t.expand(lead, *t.shape)

    def __call__(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        model = self.model
        lead = x.shape[0]
        delta = (None if model.user_embedding is None
                 else self._get(params, "user_embedding.delta", lead))  # [U, Fu, d]
        h = model.backbone.embed(x, delta)  # [U, L, input_dim]
        for prefix, layer in self.layers:
            w1, b1, w2, b2 = (self._get(params, f"{prefix}.gate.{k}", lead) for k in _GATE)
            h = layer.mix(h, [self._get(params, f"{prefix}.{b}.lora_A", lead) for b in layer.branches],
                          [self._get(params, f"{prefix}.{b}.lora_B", lead) for b in layer.branches], (w1, b1, w2, b2))
        logits: Tensor = model.backbone.head(h).squeeze(-1)  # [U, L]
        return logits
