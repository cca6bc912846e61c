"""Which local examples a client trains on, in which order, in one round (torch-free).

The HTTP path (one device, ``edge/``) and the in-process simulation (``fedpa.sim``) must take the
same SGD steps to agree to 1e-4, so both draw their mini-batches from this one function. The order
depends only on ``(seed, client, round)`` — not on thread scheduling, on which other clients
take part, or on the process — so a device restarted after a crash replays the same round.

Usage: ``for idx in local_batches(n, batch_size=64, epochs=1, seed=0, client=7, round=3): ...``.
"""

from __future__ import annotations

import numpy as np

from fedpa.errors import ConfigError

__all__ = ["local_batches", "round_rng"]


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
