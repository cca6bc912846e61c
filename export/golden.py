"""Computing a bundle's golden vectors with eager PyTorch (the reference every runtime must match).

The personalisation tensors are the bundle's initial ones for one (non-OOV) group assignment,
*perturbed* (``fedpa.runtime.golden.perturb``, a formula every runtime recomputes from the seed
and scale): freshly initialised adapters have ``B = 0`` and would make the adapter paths
invisible in the comparison, so a runtime that dropped them would still pass.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from export.wrappers import personalisation_names
from fedpa.model import FedPARecommender
from fedpa.personalise import load_tensors
from fedpa.runtime.golden import Golden, GoldenCase, GoldenTraining, perturb

__all__ = ["make_golden"]


def _rows(model: FedPARecommender, n: int, groups_row: Mapping[int, int], rng: np.random.Generator) -> np.ndarray:
    """``n`` candidates for one user: one random user part (with the given group codes), random items."""
    cards = np.asarray(model.backbone.config.cardinalities)
    n_user = model.backbone.config.n_user_features
    x = rng.integers(0, cards, size=(n, len(cards)))
    x[:, :n_user] = rng.integers(0, cards[:n_user])
    for position, value in groups_row.items():
        x[:, position] = value
    return x.astype(np.int64)


def make_golden(model: FedPARecommender, personalisation: Mapping[str, np.ndarray], *,
                group_positions: Mapping[str, int], groups: Mapping[str, int], seed: int = 0,
                lr: float = 0.05, case_sizes: tuple[int, ...] = (1, 3, 16), train_batch: int = 16,
                noise: float = 0.1, item_vectors: np.ndarray | None = None) -> Golden:
    """Golden inference cases and one SGD step from ``personalisation`` (by parameter name), perturbed.

    For a model whose backbone takes external item vectors, ``item_vectors`` are the dequantised
    rows by item code (exactly what the item table serves): each row's vector is the one of its
    item code, recorded with the case.
    """
    column = model.backbone.item_column
    if (column is None) != (item_vectors is None):
        raise ValueError("item_vectors are needed exactly when the model takes external item vectors")

    def vectors(x: np.ndarray) -> np.ndarray | None:
        return None if item_vectors is None else np.asarray(item_vectors, np.float32)[x[:, column]]

    def run(x: np.ndarray, v: np.ndarray | None) -> torch.Tensor:
        logits: torch.Tensor = reference(torch.from_numpy(x), None if v is None else torch.from_numpy(v))
        return logits

    rng = np.random.default_rng(seed)
    names = personalisation_names(model)
    tensors = perturb({n: np.asarray(personalisation[n], np.float32) for n in names}, seed=seed, scale=noise)
    reference = copy.deepcopy(model).eval()
    load_tensors(reference, tensors)
    positions = {group_positions[a]: v for a, v in groups.items()}

    cases = []
    with torch.no_grad():
        for n in case_sizes:
            x = _rows(model, n, positions, rng)
            v = vectors(x)
            cases.append(GoldenCase(x=x, logits=run(x, v).numpy().astype(np.float32), item_vector=v))

    x = _rows(model, train_batch, positions, rng)
    v = vectors(x)
    y = (np.arange(train_batch) % 2).astype(np.float32)  # both classes, deterministic
    params = dict(reference.named_parameters())
    for name in names:
        params[name].requires_grad_(True)
    yt = torch.from_numpy(y)
    loss = F.binary_cross_entropy_with_logits(run(x, v), yt)
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    gradients = {n: g.numpy().astype(np.float32) for n, g in zip(names, grads, strict=True)}
    with torch.no_grad():
        for name in names:
            params[name].sub_(lr * torch.from_numpy(gradients[name]))
        loss_after = float(F.binary_cross_entropy_with_logits(run(x, v), yt))
    training = GoldenTraining(lr=lr, x=x, y=y, loss=float(loss.detach()), gradients=gradients, loss_after=loss_after,
                              item_vector=v)
    return Golden(personalisation=tensors, cases=tuple(cases), training=training, groups=dict(groups), seed=seed,
                  scale=noise)
