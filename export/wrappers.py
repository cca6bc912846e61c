"""The two modules that get exported: an inference wrapper and ``WithLoss`` (build time, torch).

Inference takes the personalisation tensors as *runtime inputs* so that adapters trained on the
device, or downloaded from the server, run without re-exporting; the training program instead
holds them as its trainable state, because ExecuTorch's training extension updates parameters in
place. Both keep the frozen backbone and head as constants inside the program. A model whose
backbone takes external item vectors (``fedpa.model.external_item_vectors``) gets one more input,
``item_vector [B, d]`` (:func:`item_vector_ios`): after ``x`` for inference, after ``y`` for training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedpa.manifest import TensorIO
from fedpa.model import FedPARecommender, ParamGroup, parameter_groups

__all__ = [
    "ITEM_VECTOR",
    "PERSONALISATION_GROUPS",
    "InferenceWrapper",
    "WithLoss",
    "item_vector_ios",
    "personalisation_ios",
    "personalisation_names",
]

# The order of personalisation inputs: private first, then group adapters, then the gate.
PERSONALISATION_GROUPS = (ParamGroup.PRIVATE, ParamGroup.GROUP, ParamGroup.GATE)
ITEM_VECTOR = "item_vector"  # the programs' input name for the candidates' item vectors


def item_vector_ios(model: FedPARecommender) -> tuple[TensorIO, ...]:
    """``(item_vector [-1, d] float32,)`` when the backbone takes external item vectors, else ``()``."""
    if model.backbone.item_column is None:
        return ()
    return (TensorIO(name=ITEM_VECTOR, shape=(-1, model.backbone.config.embedding_dim), dtype="float32",
                     group="item"),)


def _example_item_vector(model: FedPARecommender, batch: int) -> tuple[Tensor, ...]:
    return tuple(torch.zeros(batch, model.backbone.config.embedding_dim) for _ in item_vector_ios(model))


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


class InferenceWrapper(nn.Module):
    """``forward(x, [item_vector,] *tensors)``: the recommender with its personalisation tensors swapped in.

    ``torch.func.functional_call`` substitutes the given tensors for the named parameters for one
    call, so the exported graph reads them from its inputs while the backbone stays constant.
    """

    def __init__(self, model: FedPARecommender) -> None:
        super().__init__()
        self.model = model
        self.names = personalisation_names(model)
        self.takes_item_vector = bool(item_vector_ios(model))

    def forward(self, x: Tensor, *tensors: Tensor) -> Tensor:
        item_vector = tensors[0] if self.takes_item_vector else None
        tensors = tensors[1:] if self.takes_item_vector else tensors
        logits: Tensor = torch.func.functional_call(self.model, dict(zip(self.names, tensors, strict=True)), (x,),
                                                    {"item_vector": item_vector}, strict=False)
        return logits

    def example_inputs(self, batch: int) -> tuple[Tensor, ...]:
        params = dict(self.model.named_parameters())
        x = torch.zeros(batch, len(self.model.backbone.config.cardinalities), dtype=torch.long)
        return (x, *_example_item_vector(self.model, batch), *(params[n].detach().clone() for n in self.names))


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

    # Overrides with another signature on purpose: the program is (x, y) → (loss,), the recommender
    # x → logits; it subclasses FedPARecommender only to keep its parameter names, nothing uses it as one.
    def forward(self, x: Tensor, y: Tensor, item_vector: Tensor | None = None) -> tuple[Tensor]:  # type: ignore[override]
        return (F.binary_cross_entropy_with_logits(super().forward(x, item_vector), y),)

    def example_inputs(self, batch: int) -> tuple[Tensor, ...]:
        """``(x, y[, item_vector])`` of ``batch`` rows: the training program's inputs."""
        x = torch.zeros(batch, len(self.backbone.config.cardinalities), dtype=torch.long)
        return (x, torch.zeros(batch), *_example_item_vector(self, batch))
