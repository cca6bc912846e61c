"""The two modules that get exported: an inference wrapper and ``WithLoss`` (build time, torch).

Inference takes the personalisation tensors as *runtime inputs* so that adapters trained on the
device, or downloaded from the server, run without re-exporting; the training program instead
holds them as its trainable state, because ExecuTorch's training extension updates parameters in
place. Both keep the frozen backbone and head as constants inside the program.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedpa.manifest import TensorIO
from fedpa.model import FedPALayer, FedPARecommender, ParamGroup, parameter_groups

__all__ = [
    "PERSONALISATION_GROUPS",
    "FusedFedPALayer",
    "InferenceWrapper",
    "WithLoss",
    "fuse_for_inference",
    "personalisation_ios",
    "personalisation_names",
]

# The order of personalisation inputs: private first, then group adapters, then the gate.
PERSONALISATION_GROUPS = (ParamGroup.PRIVATE, ParamGroup.GROUP, ParamGroup.GATE)


def personalisation_names(model: FedPARecommender) -> tuple[str, ...]:
    """Plain parameter names of every personalisation tensor, in program-input order."""
    groups = parameter_groups(model)
    return tuple(name for g in PERSONALISATION_GROUPS for name in groups[g])


def personalisation_ios(model: FedPARecommender) -> tuple[TensorIO, ...]:
    """The manifest's description of those tensors (name, shape, owner group)."""
    groups = parameter_groups(model)
    return tuple(
        TensorIO(name=name, shape=tuple(p.shape), dtype="float32", group=g.value)
        for g in PERSONALISATION_GROUPS
        for name, p in groups[g].items()
    )


class FusedFedPALayer(nn.Module):
    """Export form of :class:`FedPALayer`: the same function, with every low-rank branch in one matmul pair.

    ``Σ_k π_k·s·B_k(A_k x)`` = ``((π·S) ⊙ (x·[A_1;…;A_K]ᵀ)) · (s·[B_1 … B_K])ᵀ`` where the constant
    ``S`` spreads each branch weight over its ``r`` rank columns. Why: ranking 256 candidates is
    dominated by per-op overhead, not arithmetic; this form has a third of the ops, no dynamic-batch
    slices (which XNNPACK refuses, splitting the graph), and ran ~20% faster. It adopts the layer's
    modules, so parameter names are unchanged; every build checks it against the eager model
    (golden vectors), so a change to ``FedPALayer`` that this form does not follow fails the build.
    """

    def __init__(self, layer: FedPALayer) -> None:
        super().__init__()
        self.base, self.user, self.groups, self.gate = layer.base, layer.user, layer.groups, layer.gate
        self.gate_mode = layer.gate_mode
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

    def forward(self, x: Tensor) -> Tensor:
        loras = [self.user, *self.groups.values()]
        low = x @ torch.cat([lora.lora_A for lora in loras]).mT  # [L, k·r]
        up = torch.cat([lora.lora_B * lora.scale for lora in loras], dim=1)  # [out, k·r]
        common = torch.relu(self.base(x))
        logits = self.gate(x)  # [L, n_branches]
        if self.gate_mode == "paper":
            weights = torch.softmax(logits, dim=-1)
            return (weights @ self.first) * common + ((weights @ self.spread) * low) @ up.mT
        return common + ((torch.sigmoid(logits) @ self.spread) * low) @ up.mT


def fuse_for_inference(model: FedPARecommender) -> FedPARecommender:
    """A copy of ``model`` whose FedPA layers are :class:`FusedFedPALayer` (same parameter names)."""
    fused = copy.deepcopy(model)
    for i, layer in enumerate(fused.layers):
        fused.layers[i] = FusedFedPALayer(layer)
    return fused


class InferenceWrapper(nn.Module):
    """``forward(x, *tensors)``: the recommender with its personalisation tensors swapped in.

    ``torch.func.functional_call`` substitutes the given tensors for the named parameters for one
    call, so the exported graph reads them from its inputs while the backbone stays constant.
    """

    def __init__(self, model: FedPARecommender) -> None:
        super().__init__()
        self.model = model
        self.names = personalisation_names(model)

    def forward(self, x: Tensor, *tensors: Tensor) -> Tensor:
        return torch.func.functional_call(self.model, dict(zip(self.names, tensors, strict=True)), (x,),
                                          strict=False)

    def example_inputs(self, batch: int) -> tuple[Tensor, ...]:
        params = dict(self.model.named_parameters())
        x = torch.zeros(batch, len(self.model.backbone.config.cardinalities), dtype=torch.long)
        return (x, *(params[n].detach().clone() for n in self.names))


class WithLoss(FedPARecommender):
    """The recommender with its BCE loss as the first (and only) output: the training program.

    It *adopts* the given model's modules instead of wrapping them, so the trainable tensors keep
    their plain names (``layers.0.user.lora_A``) in the program — the names the manifest, the
    shared state and the Android engine use — rather than gaining a ``model.`` prefix.
    """

    def __init__(self, model: FedPARecommender) -> None:
        nn.Module.__init__(self)
        self.config = model.config
        self.backbone = model.backbone
        self.layers = model.layers
        self.user_embedding = model.user_embedding

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor]:  # type: ignore[override]
        return (F.binary_cross_entropy_with_logits(super().forward(x), y),)
