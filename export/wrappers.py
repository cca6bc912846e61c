"""The two modules that get exported: an inference wrapper and ``WithLoss`` (build time, torch).

Inference takes the personalisation tensors as *runtime inputs* so that adapters trained on the
device, or downloaded from the server, run without re-exporting; the training program instead
holds them as its trainable state, because ExecuTorch's training extension updates parameters in
place. The frozen backbone and head are runtime inputs of every program too: the bundle carries
them once (``backbone.safetensors``) instead of as a constant inside each of the three programs. A
model whose backbone takes external item vectors (``fedpa.model.external_item_vectors``) gets one
more input, ``item_vector [B, d]`` (:func:`item_vector_ios`): after ``x`` for inference, after ``y``
for training; the item-code rows then travel in the item table, not in the bundle.
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
    "drop_frozen_parameters",
    "frozen_ios",
    "frozen_names",
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


def frozen_names(model: nn.Module) -> tuple[str, ...]:
    """Plain parameter names of the frozen backbone and head, in program-input order (after the personalisation).

    A hidden layer's frozen linear is registered twice (``backbone.layers.0`` and ``layers.0.base``);
    ``named_parameters`` yields it once, under its first (backbone) name, and ``functional_call``
    substitutes the input for both (tied weights).
    """
    return tuple(parameter_groups(model)[ParamGroup.FROZEN])


def frozen_ios(model: nn.Module) -> tuple[TensorIO, ...]:
    """The manifest's description of the frozen inputs (group ``"frozen"``): ``backbone.safetensors``' contents."""
    return tuple(TensorIO(name=name, shape=tuple(p.shape), dtype="float32", group="frozen")
                 for name, p in parameter_groups(model)[ParamGroup.FROZEN].items())


def drop_frozen_parameters(model: nn.Module) -> None:
    """Unregister every frozen parameter of ``model`` (in place), keeping its value as a plain attribute.

    Why: ``torch.export`` lifts every registered parameter into the program's state even when
    ``functional_call`` feeds it from an input, so the program would still carry the backbone.
    Call it on the wrapper's (copied) model after taking the example inputs, right before export.
    """
    for name in frozen_names(model):
        owner, _, attr = name.rpartition(".")
        module = model.get_submodule(owner)
        value = module._parameters.pop(attr)
        if value is None:  # a registered-but-unset parameter: nothing to feed, nothing to drop
            raise RuntimeError(f"frozen parameter {name!r} has no value")
        object.__setattr__(module, attr, value.detach())


class InferenceWrapper(nn.Module):
    """``forward(x, [item_vector,] *personalisation, *frozen)``: the recommender with all its parameters swapped in.

    ``torch.func.functional_call`` substitutes the given tensors for the named parameters for one
    call, so the exported graph reads them from its inputs and holds no weights of its own.
    """

    def __init__(self, model: FedPARecommender) -> None:
        super().__init__()
        self.model = model
        self.names = (*personalisation_names(model), *frozen_names(model))
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
    shared state and the Android engine use — rather than gaining a ``model.`` prefix. The frozen
    tensors arrive as inputs after ``(x, y)`` (:func:`frozen_names` order) and are swapped in with
    ``functional_call``; being inputs, not parameters, they get no gradient.
    """

    def __init__(self, model: FedPARecommender) -> None:
        nn.Module.__init__(self)
        self.config = model.config
        self.backbone = model.backbone
        self.layers = model.layers
        self.user_embedding = model.user_embedding
        self.frozen = frozen_names(model)
        self.takes_item_vector = bool(item_vector_ios(model))

    # Overrides with another signature on purpose: the program is (x, y, [item_vector,] *frozen) →
    # (loss,), the recommender x → logits; it subclasses FedPARecommender only to keep its parameter names.
    def forward(self, x: Tensor, y: Tensor, *rest: Tensor) -> tuple[Tensor]:  # type: ignore[override]
        item_vector = rest[0] if self.takes_item_vector else None
        frozen = rest[1:] if self.takes_item_vector else rest
        if frozen:  # re-enters with the frozen tensors swapped in (and none passed)
            args = (x, y, item_vector) if self.takes_item_vector else (x, y)
            out: tuple[Tensor] = torch.func.functional_call(self, dict(zip(self.frozen, frozen, strict=True)),
                                                            args, strict=False)
            return out
        return (F.binary_cross_entropy_with_logits(super().forward(x, item_vector), y),)

    def example_inputs(self, batch: int) -> tuple[Tensor, ...]:
        """``(x, y[, item_vector])`` of ``batch`` rows: the training program's inputs before the frozen ones."""
        x = torch.zeros(batch, len(self.backbone.config.cardinalities), dtype=torch.long)
        return (x, torch.zeros(batch), *_example_item_vector(self, batch))

    def frozen_inputs(self) -> tuple[Tensor, ...]:
        """The frozen tensors' current values, in input order (example inputs for export)."""
        params = dict(self.named_parameters())
        return tuple(params[n].detach().clone() for n in self.frozen)
