"""Vectorised client training and evaluation: U clients' tensors stacked as ``[U, ...]``.

Why one batched program instead of U model copies: a round over 100,000 clients must take seconds.
Every trainable tensor carries a leading client dimension, the model broadcasts over it
(``fedpa.model``), and one forward/backward per SGD step serves every client that still has a
batch. Per-client semantics stay exact: the loss is the *sum* of each client's own mean loss, so
client ``i``'s gradient is the gradient of its own loss alone, and plain SGD (the optimiser of the
on-device training program) has no state that could couple clients. Chunking the clients of a step
(``max_rows``) bounds memory and changes nothing else.

Usage: ``trained, loss, skipped = local_train(forward, params, rows, clients, LocalTraining(lr=0.1), round=3)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fedpa.schedule import LocalTraining
from fedpa.sim.layout import ClientRows, Segments, Step, step_plan
from fedpa.state import SharedStateSpec

__all__ = ["Forward", "LocalResult", "Population", "local_train", "predict"]

# batched params ({name: [U, ...]}) and codes [U, L, F] → logits [U, L]
Forward = Callable[[Mapping[str, Tensor], Tensor], Tensor]


def _chunks(step: Step, max_rows: int) -> Iterator[Step]:
    per = max(1, max_rows // max(1, step.idx.shape[1]))
    for i in range(0, step.clients.numel(), per):
        yield Step(step.clients[i : i + per], step.idx[i : i + per], step.mask[i : i + per])


class LocalResult(NamedTuple):
    """What a round of local training returns."""

    trained: dict[str, Tensor]  # the clients' tensors after training, [U, ...]
    loss: Tensor  # [U] each client's mean loss over its applied steps (NaN: none applied)
    skipped: Tensor  # [U] steps dropped because the client's loss or gradient was not finite


def local_train(forward: Forward, params: Mapping[str, Tensor], rows: ClientRows, clients: np.ndarray,
                config: LocalTraining, *, round: int, inplace: bool = False, max_rows: int = 1 << 18) -> LocalResult:
    """Train every client's tensors (``params[name][i]`` belongs to ``clients[i]``) on its own rows.

    Each client takes the steps a device with ``replace(config, client=clients[i])`` takes (the
    config's ``client`` field is not used: every row names its own client). ``max_rows`` bounds the
    rows of one forward/backward chunk: a memory bound, not a semantic one.

    A step whose loss or gradient is not finite for a client is dropped *for that client* (its
    tensors stay as they were) — what a device does rather than keep a NaN model; counted in
    ``skipped``. The inputs are untouched unless ``inplace`` (saves a copy at scale).
    """
    n = len(clients)
    trained = {k: v.detach() if inplace else v.detach().clone() for k, v in params.items()}
    loss_sum = torch.zeros(n, dtype=torch.float64)
    steps = torch.zeros(n, dtype=torch.float64)
    skipped = torch.zeros(n, dtype=torch.int64)
    for step in step_plan(rows, clients, batch_size=config.batch_size, epochs=config.epochs, seed=config.seed,
                           round=round):
        for chunk in _chunks(step, max_rows):
            act = chunk.clients
            everyone = act.numel() == n  # then no gather/scatter: train the tensors in place
            leaves = {k: (v.detach() if everyone else v[act]).requires_grad_(True) for k, v in trained.items()}
            x = rows.x[chunk.idx]  # [A, W, F]
            y = rows.y[chunk.idx]  # [A, W]
            mask = chunk.mask.to(y.dtype)
            logits = forward(leaves, x)
            bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none") * mask
            per_client = bce.sum(-1) / mask.sum(-1)  # [A] each client's own mean loss
            grads = torch.autograd.grad(per_client.sum(), list(leaves.values()))
            with torch.no_grad():
                ok = torch.isfinite(per_client)
                for g in grads:  # a row sum is non-finite iff the client's gradient is (or overflows)
                    ok &= torch.isfinite(g.flatten(1).sum(1))
                if not bool(ok.all()):
                    grads = tuple(torch.where(ok.view(-1, *[1] * (g.dim() - 1)), g, 0.0) for g in grads)
                    skipped.index_add_(0, act, (~ok).long())
                for v, g in zip(trained.values(), grads, strict=True):
                    if everyone:
                        v.add_(g, alpha=-config.lr)
                    else:
                        v.index_add_(0, act, g, alpha=-config.lr)
                loss_sum.index_add_(0, act, torch.where(ok, per_client.detach(), 0.0).double())
                steps.index_add_(0, act, ok.double())
    return LocalResult(trained, loss_sum / steps, skipped)


@torch.no_grad()
def predict(forward: Forward, params_for: Callable[[Tensor], Mapping[str, Tensor]], rows: ClientRows,
            segs: Segments, *, max_rows: int = 1 << 18) -> np.ndarray:
    """Logits for every row of ``rows``; ``params_for(owners)`` gives each segment's client tensors."""
    out = torch.zeros(rows.x.shape[0])
    length = segs.idx.shape[1]
    per = max(1, max_rows // length)
    for i in range(0, segs.owner.numel(), per):
        idx, mask = segs.idx[i : i + per], segs.mask[i : i + per]
        logits = forward(params_for(segs.owner[i : i + per]), rows.x[idx])  # [S, length]
        out[idx[mask]] = logits[mask]
    return out.numpy()


class Population:
    """Every client's personalisation state between rounds.

    Private tensors live here per client (``[C, ...]``, they never leave the "device"); shared
    tensors live in the bank (numpy, wire names — what the server holds) and are handed to a client
    as the gate plus the adapters of *its* group values.
    """

    def __init__(self, private_init: Mapping[str, Tensor], n_clients: int, spec: SharedStateSpec | None,
                 bank: Mapping[str, np.ndarray], group_values: Mapping[str, np.ndarray]) -> None:
        self.n_clients = n_clients
        self.private = {k: v.detach().expand(n_clients, *v.shape).clone() for k, v in private_init.items()}
        self.spec = spec
        # shared param → its grouping attribute (None: the gate, shared by all)
        self.shared: dict[str, str | None] = {}
        for t in spec.tensors if spec else ():
            self.shared[t.param] = t.attribute
        self.values = {a: torch.as_tensor(np.asarray(v, np.int64)) for a, v in group_values.items()}
        self.bank: dict[str, np.ndarray] = {}
        self._stacked: dict[str, Tensor] = {}
        self.set_bank(bank)

    def set_bank(self, bank: Mapping[str, np.ndarray]) -> None:
        """Install a new bank; group tensors are stacked per value (``[V, ...]``) for gathering."""
        self.bank = dict(bank)
        stacked: dict[str, dict[int, Tensor]] = {}
        for t in self.spec.tensors if self.spec else ():
            stacked.setdefault(t.param, {})[t.value or 0] = torch.from_numpy(np.asarray(bank[t.name], np.float32))
        self._stacked = {p: torch.stack([d[v] for v in range(len(d))]) for p, d in stacked.items()}

    def params(self, clients: Tensor, *, copy: bool = False) -> dict[str, Tensor]:
        """The tensors clients ``clients`` hold: private ones, the gate and their groups' adapters.

        With ``copy=False`` (evaluation) tensors shared by everyone come without a client dimension,
        so the model broadcasts them (one large matmul instead of U small ones); training needs
        ``copy=True``: every client gets its own ``[U, ...]`` copy to train.
        """
        out = {k: v[clients] for k, v in self.private.items()}
        for p, attribute in self.shared.items():
            stacked = self._stacked[p]
            if attribute is None:
                out[p] = stacked[0].expand(clients.numel(), *stacked.shape[1:]).clone() if copy else stacked[0]
            else:
                out[p] = stacked[self.values[attribute][clients]]
        return out

    def shared_base(self, p: str, clients: Tensor) -> Tensor:
        """What ``clients`` downloaded for shared tensor ``p`` (broadcastable to ``[U, ...]``)."""
        attribute = self.shared[p]
        stacked = self._stacked[p]
        return stacked[0] if attribute is None else stacked[self.values[attribute][clients]]

    def store_private(self, clients: Tensor, params: Mapping[str, Tensor]) -> None:
        """Keep the clients' trained private tensors for their next round (on-device persistence)."""
        for k, v in self.private.items():
            v[clients] = params[k].detach()

    def group_values(self, clients: Tensor) -> dict[str, np.ndarray]:
        """Each client's value of every grouping attribute of the bank."""
        return {a: v[clients].numpy() for a, v in self.values.items()}
