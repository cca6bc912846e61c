"""``FedPARecommender.forward`` for ``[U, L, F]`` inputs, with each layer's branches fused.

Why: with many clients and few rows each, the batched forward is bound by per-client matrix
overhead and by passes over ``[U, L, hidden]`` activations, not by arithmetic. The model computes
every branch separately (``(x Aᵀ) Bᵀ·α/r``, then ``π·branch``, then a sum): per layer 8 batched
matmuls and ~10 full-size elementwise passes. Because every branch is linear in its own
projection and the gate weight is a per-row scalar,

    Σ_b π_b · (x A_bᵀ) B_bᵀ · s  =  ((x [A_1; …; A_n]ᵀ) ⊙ π_rep) [B_1 … B_n]ᵀ · s

so one matmul projects ``x`` onto every branch's A *and* the gate's first layer, the gate weights
scale the tiny ``[U, L, n·r]`` projection, and one matmul maps it back. Same function, same
parameter names; ``tests/sim/test_fused.py`` checks it against the model in both gate modes.

Usage: ``forward = FusedForward(model)``; ``logits = forward(params, x)`` with ``x`` ``[U, L, F]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from fedpa.model import FedPARecommender

__all__ = ["FusedForward"]


class FusedForward:
    """A batched forward equal to ``functional_call(model, params, (x,))`` for 3-D ``x``."""

    def __init__(self, model: FedPARecommender) -> None:
        self.model = model
        self.own = dict(model.named_parameters())  # tensors not passed in come from the model
        self.rank = model.config.rank
        self.layers = []
        for i, layer in enumerate(model.layers):
            prefix = f"layers.{i}"
            branches = [f"{prefix}.user", *(f"{prefix}.groups.{a}" for a in layer.groups)]
            self.layers.append((layer, branches, f"{prefix}.gate", layer.user.scale))

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
        r = self.rank
        for layer, branches, gate, scale in self.layers:
            g = {k: self._get(params, f"{gate}.{k}", lead) for k in ("w1", "b1", "w2", "b2")}
            a = torch.cat([*(self._get(params, f"{b}.lora_A", lead) for b in branches), g["w1"]], dim=-2)
            b = torch.cat([self._get(params, f"{b}.lora_B", lead) for b in branches], dim=-1)  # [U, out, n·r]
            projected = h @ a.mT  # [U, L, n·r + gate_hidden]
            n_r = r * len(branches)
            logits = torch.relu(projected[..., n_r:] + g["b1"]) @ g["w2"].mT + g["b2"]  # [U, L, n_branches]
            common = torch.relu(layer.base(h))  # the frozen layer: one large matmul for all clients
            if layer.gate_mode == "paper":
                weights = torch.softmax(logits, dim=-1)
                branch_w, common = weights[..., 1:], weights[..., :1] * common
            else:
                branch_w = torch.sigmoid(logits)
            mixed = projected[..., :n_r] * branch_w.repeat_interleave(r, dim=-1)  # [U, L, n·r]
            h = common + mixed @ (b.mT * scale)  # scale the small matrix, not the activations
        return model.backbone.head(h).squeeze(-1)  # [U, L]
