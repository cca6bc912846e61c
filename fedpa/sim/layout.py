"""Row layouts for the batched simulation: each client's rows, its mini-batch order, padded steps.

The simulation trains U clients at once with tensors shaped ``[U, L, F]``. This module turns one
split (rows sorted by user) into that shape without a Python loop over clients where it can:

* :class:`ClientRows` — CSR layout: client ``c``'s rows are ``offsets[c]:offsets[c+1]``;
* :func:`step_plan` — the SGD steps of one round. Each client's mini-batches come from
  :func:`fedpa.schedule.local_batches` (the same order the edge client uses), so a simulated client
  takes exactly the steps a real device would. Step ``s`` trains, for every client that still has a
  batch, its ``s``-th batch; clients run out at different steps and simply stop;
* :func:`segments` — evaluation: every client's rows cut into fixed-length pieces.

Usage: ``rows = ClientRows.from_split(ds.private_train, ds.private_users)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from fedpa.errors import ConfigError
from fedpa.schedule import local_batches

if TYPE_CHECKING:
    from fedpa.data import Interactions

__all__ = ["ClientRows", "Segments", "Step", "segment_length", "segments", "step_plan"]


@dataclass(frozen=True)
class ClientRows:
    """The rows of one split grouped by client (CSR); client ``c`` is user ``users[c]``."""

    x: Tensor  # [N, F] feature codes (int32 when they fit)
    y: Tensor  # [N] float32 labels
    user: np.ndarray  # [N] dense user index of each row (for GAUC)
    offsets: np.ndarray  # [C + 1] int64
    users: np.ndarray  # [C] dense user index of each client (seeds its batch order)

    @classmethod
    def from_arrays(cls, user: np.ndarray, x: np.ndarray, y: np.ndarray, users: np.ndarray) -> ClientRows:
        """Rows (grouped by ``user``, any user order) → CSR over ``users``; rows of other users dropped."""
        user = np.asarray(user, np.int64)
        users = np.asarray(users, np.int64)
        order = np.argsort(user, kind="stable")  # keeps each user's rows in time order
        sorted_user = user[order]
        start = np.searchsorted(sorted_user, users, side="left")
        end = np.searchsorted(sorted_user, users, side="right")
        counts = end - start
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
        # row r of client c sits at order[start[c] + (r - offsets[c])]
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts)
        idx = order[np.repeat(start, counts) + within]
        codes = x[idx]
        # int32 codes halve the largest array at 1M users; the model adds int64 offsets anyway
        small = codes.size == 0 or int(codes.max()) < 2**31 - 1
        return cls(x=torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int32 if small else np.int64)),
                   y=torch.from_numpy(np.ascontiguousarray(y[idx], dtype=np.float32)),
                   user=user[idx], offsets=offsets, users=users)

    @classmethod
    def from_split(cls, split: Interactions, users: np.ndarray) -> ClientRows:
        """From one split of a dataset (its ``user``, ``x`` and ``y``)."""
        return cls.from_arrays(split.user, split.x, split.y, users)

    @property
    def counts(self) -> np.ndarray:
        """Rows per client, ``[C]``."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.users)

    def concat(self, other: ClientRows) -> tuple[ClientRows, np.ndarray]:
        """Each client's rows of ``self`` then of ``other`` (same clients), and a mask of ``self``'s rows.

        Why: val and test are scored in one batched pass after every round (half the gathers).
        """
        if not np.array_equal(self.users, other.users):
            raise ConfigError("concat needs the same clients in the same order")
        a, b = self.counts, other.counts
        owner = np.r_[np.repeat(np.arange(len(a)), a), np.repeat(np.arange(len(b)), b)]
        src = np.r_[np.zeros(a.sum(), bool), np.ones(b.sum(), bool)]
        order = np.argsort(owner, kind="stable")  # per client: its rows of self, then of other
        x = torch.cat([self.x, other.x])[torch.from_numpy(order)]
        y = torch.cat([self.y, other.y])[torch.from_numpy(order)]
        user = np.r_[self.user, other.user][order]
        offsets = np.r_[0, np.cumsum(a + b)].astype(np.int64)
        return ClientRows(x=x, y=y, user=user, offsets=offsets, users=self.users), ~src[order]


@dataclass(frozen=True)
class Step:
    """One SGD step for the clients that still have a batch: rows ``idx[i, :]`` where ``mask``."""

    clients: Tensor  # [A] positions in the round's client list
    idx: Tensor  # [A, W] row indices into ClientRows.x (padding repeats a valid row)
    mask: Tensor  # [A, W] bool: which entries are real examples


def _round_orders(rows: ClientRows, clients: np.ndarray, *, batch_size: int, epochs: int, seed: int,
                  round: int) -> tuple[np.ndarray, np.ndarray]:
    """Per client its rows in training order (``epochs`` × n entries, CSR) and its batch count.

    A client whose rows fit in one batch trains on all of them every epoch, whatever the
    permutation, so ``local_batches`` is only called for clients with more rows than a batch.
    """
    counts = rows.counts[clients]
    starts = rows.offsets[clients]
    lengths = counts * epochs
    order_offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    order = np.empty(order_offsets[-1], np.int64)
    small = counts <= batch_size
    # identity order, repeated per epoch, for the small clients (vectorised)
    sel = np.flatnonzero(small)
    if sel.size:
        rep = np.repeat(sel, lengths[sel])
        pos = np.arange(rep.size) - np.repeat(np.r_[0, np.cumsum(lengths[sel])[:-1]], lengths[sel])
        order[np.repeat(order_offsets[sel], lengths[sel]) + pos] = starts[rep] + pos % np.maximum(counts[rep], 1)
    for i in np.flatnonzero(~small):
        batches = local_batches(int(counts[i]), batch_size=batch_size, epochs=epochs, seed=seed,
                                client=int(rows.users[clients[i]]), round=round)
        order[order_offsets[i] : order_offsets[i + 1]] = starts[i] + np.concatenate(batches)
    n_batches = -(-counts // batch_size) * epochs  # ceil(n / B) per epoch
    return order, n_batches


def step_plan(rows: ClientRows, clients: np.ndarray, *, batch_size: int, epochs: int, seed: int,
              round: int) -> Iterator[Step]:
    """The round's SGD steps for ``clients`` (positions into ``rows``), in order.

    Client ``i``'s ``s``-th step is epoch ``s // k`` batch ``s % k`` of ``local_batches`` (``k``
    batches per epoch): the same rows, in the same batches, as on a device.
    """
    if batch_size < 1 or epochs < 0:
        raise ConfigError(f"need batch_size ≥ 1 and epochs ≥ 0, got {batch_size}, {epochs}")
    clients = np.asarray(clients, np.int64)
    order, n_batches = _round_orders(rows, clients, batch_size=batch_size, epochs=epochs, seed=seed, round=round)
    counts = rows.counts[clients]
    per_epoch = -(-counts // batch_size)
    order_offsets = np.r_[0, np.cumsum(counts * epochs)]
    for s in range(int(n_batches.max(initial=0))):
        active = np.flatnonzero(n_batches > s)
        epoch, j = np.divmod(s, per_epoch[active])
        n = counts[active]
        start = order_offsets[active] + epoch * n + j * batch_size  # into `order`
        size = np.minimum(batch_size, n - j * batch_size)
        width = int(size.max())
        cols = np.arange(width)
        mask = cols[None, :] < size[:, None]
        pos = start[:, None] + np.minimum(cols[None, :], size[:, None] - 1)
        yield Step(clients=torch.from_numpy(active), idx=torch.from_numpy(order[pos]),
                   mask=torch.from_numpy(mask))


@dataclass(frozen=True)
class Segments:
    """Rows cut into pieces of at most ``length`` rows, each owned by one client (for evaluation)."""

    owner: Tensor  # [S] client position
    idx: Tensor  # [S, length] row indices (padding repeats a valid row)
    mask: Tensor  # [S, length] bool


def segments(rows: ClientRows, *, length: int = 32) -> Segments:
    """Every client's rows in pieces of ``length``: padding is < ``length`` rows per client."""
    counts = rows.counts
    per = -(-counts // length)
    owner = np.repeat(np.arange(len(counts)), per)
    piece = np.arange(owner.size) - np.repeat(np.r_[0, np.cumsum(per)[:-1]], per)
    start = rows.offsets[owner] + piece * length
    size = np.minimum(length, rows.offsets[owner + 1] - start)
    cols = np.arange(length)
    mask = cols[None, :] < size[:, None]
    idx = start[:, None] + np.minimum(cols[None, :], size[:, None] - 1)
    return Segments(owner=torch.from_numpy(owner), idx=torch.from_numpy(idx), mask=torch.from_numpy(mask))


def segment_length(counts: np.ndarray, *, overhead: int = 8) -> int:
    """The piece length that minimises padded rows plus a per-piece cost (its tensors' gather).

    Users with 4 test rows should not be padded to 32; users with 600 should not cost 150 pieces.
    """
    counts = np.asarray(counts)
    counts = counts[counts > 0]
    if counts.size == 0:
        return 1
    options = (1, 2, 4, 8, 16, 32, 64, 128)
    cost = [int((-(-counts // n) * (n + overhead)).sum()) for n in options]
    return options[int(np.argmin(cost))]
