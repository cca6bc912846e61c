"""Local training of one client round: its settings and which examples, in which order (torch-free).

:class:`LocalTraining` is the one local-SGD config: its defaults are the device's (the edge CLIs,
the demo and the Android app's ``TrainingConfig.defaults()``, checked by ``TrainingDefaultsTest``),
and the simulation builds the same class, overriding the fields it tunes by name.

The HTTP path (one device, ``edge/``) and the in-process simulation (``fedpa.sim``) must take the
same SGD steps to agree to 1e-4, so both draw their mini-batches from this one function. The order
depends only on ``(seed, client, round)`` — not on thread scheduling, on which other clients
take part, or on the process — so a device restarted after a crash replays the same round.

Usage: ``for idx in LocalTraining(client=7).batches(n, round=3): ...``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedpa.errors import ConfigError

__all__ = ["DIVERGED_LOSS", "LocalTraining", "diverged_run", "local_batches", "round_rng"]

# A local run's mean loss (binary cross-entropy, nats) above this means it diverged: its average
# probability for the true label is below e^-10, far worse than a constant guess (ln 2 ≈ 0.69).
DIVERGED_LOSS = 10.0


@dataclass(frozen=True)
class LocalTraining:
    """Plain SGD on a client's own rows in one round (the training program's optimiser).

    lr 1.0 with 5 local epochs learns within the demo's 5 rounds under Gaussian LDP (docs/edge.md).
    The simulation overrides ``lr`` per method (tuned on validation) and ``epochs`` (its protocol:
    one per round), both explicitly (``fedpa.sim.methods.Method.lr``, ``SimConfig.local_epochs``).
    """

    epochs: int = 5
    batch_size: int = 32
    lr: float = 1.0
    seed: int = 0  # with the client index, fixes the batch order of every round
    client: int = 0  # the device's index in its fleet (any stable non-negative integer)

    def __post_init__(self) -> None:
        # epochs = 0 is a round without local steps (a simulation's evaluation-only run)
        if self.epochs < 0 or self.batch_size < 1 or not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"local training needs epochs ≥ 0, batch_size ≥ 1 and a finite lr > 0; got "
                              f"epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}")
        if self.seed < 0 or self.client < 0:
            raise ConfigError(f"seed and client must be ≥ 0, got {self.seed}, {self.client}")

    def batches(self, n: int, *, round: int) -> list[np.ndarray]:
        """This client's mini-batches of ``n`` rows in round ``round`` (:func:`local_batches`)."""
        return local_batches(n, batch_size=self.batch_size, epochs=self.epochs, seed=self.seed, client=self.client,
                             round=round)


def diverged_run(loss: float, skipped_steps: int, tensors: Mapping[str, np.ndarray]) -> str | None:
    """Why a local run's result must not be used, or None when it may.

    A run diverged when any step met a non-finite loss or gradient (the trainer skipped it: the
    tensors had already left the region where SGD at this lr is stable), when its mean loss is not
    finite or above :data:`DIVERGED_LOSS`, or when a trained tensor is not finite. Such a run's
    tensors are garbage for the device's own ranking and, as an upload, only noise the server
    would average into every group member's state; the device keeps what it had (edge/device.py).
    """
    if skipped_steps:
        return f"{skipped_steps} step(s) met a non-finite loss or gradient"
    if not (math.isfinite(loss) and loss <= DIVERGED_LOSS):
        return f"mean local loss {loss:.4g} is not finite or above {DIVERGED_LOSS:g} nats"
    bad = sorted(name for name, a in tensors.items() if not np.isfinite(a).all())
    if bad:
        return f"trained tensor(s) {bad[:3]} hold NaN or infinite values"
    return None


def round_rng(seed: int, client: int, round: int, *, stream: int = 0) -> np.random.Generator:
    """A generator private to one client and round; ``stream`` separates uses (0 batches, 1 noise)."""
    if min(seed, client, round, stream) < 0:
        raise ConfigError(f"seed, client, round and stream must be ≥ 0, got {seed}, {client}, {round}, {stream}")
    return np.random.default_rng([seed, client, round, stream])


def local_batches(n: int, *, batch_size: int, epochs: int, seed: int, client: int, round: int
                  ) -> list[np.ndarray]:
    """Row indices of each mini-batch: per epoch a fresh permutation cut into ``batch_size`` pieces.

    The last batch of an epoch may be smaller (no example is dropped or repeated). ``n = 0`` gives
    no batches.
    """
    if batch_size < 1 or epochs < 0 or n < 0:
        raise ConfigError(f"need batch_size ≥ 1, epochs ≥ 0, n ≥ 0, got {batch_size}, {epochs}, {n}")
    rng = round_rng(seed, client, round)
    batches: list[np.ndarray] = []
    for _ in range(epochs):
        order = rng.permutation(n)
        batches.extend(order[i : i + batch_size] for i in range(0, n, batch_size))
    return batches
