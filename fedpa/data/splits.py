"""Open/private user assignment and per-user chronological splits (docs/design.md §1).

Pure numpy so that the synthetic generator can apply its private-population drift to exactly the
users the loader will later call private (same function, same seed).

Usage: ``is_open = assign_open_users(levels, ("3", "4"), seed=0)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedpa.data.schema import canonical_strings
from fedpa.errors import ConfigError

__all__ = [
    "MIN_INTERACTIONS",
    "assign_open_users",
    "chronological_parts",
    "split_rng",
    "time_cut",
]

MIN_INTERACTIONS = 3  # the smallest history whose 60/20/20 split leaves train, val and test non-empty
_SPLIT_STREAM = 7919  # fixed sub-stream id: the split's draws never shift when other seeded code changes


def split_rng(seed: int) -> np.random.Generator:
    """The generator used for the open/private draw, derived from the dataset seed."""
    return np.random.default_rng([_SPLIT_STREAM, int(seed)])


def _check_fraction(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def assign_open_users(
    attribute: Sequence[Any] | np.ndarray,
    pool_values: Sequence[Any],
    *,
    seed: int,
    pool_fraction: float = 0.8,
    rest_fraction: float = 0.2,
) -> np.ndarray:
    """Boolean mask of open users: the paper's rule.

    ``round(pool_fraction · n_pool)`` users drawn from those whose attribute is in ``pool_values``
    plus ``round(rest_fraction · n_rest)`` of the others; exact counts (not coin flips) so small
    datasets get the intended ratio. ``attribute`` is one value per user, in dense user order.
    """
    pool_fraction = _check_fraction("pool_fraction", pool_fraction)
    rest_fraction = _check_fraction("rest_fraction", rest_fraction)
    values = canonical_strings(attribute)
    wanted = {v for v in canonical_strings(list(pool_values)) if v is not None}
    in_pool = np.array([v in wanted for v in values], dtype=bool)
    rng = split_rng(seed)
    is_open = np.zeros(len(values), dtype=bool)
    for members, fraction in ((np.flatnonzero(in_pool), pool_fraction), (np.flatnonzero(~in_pool), rest_fraction)):
        k = round(fraction * len(members))
        is_open[rng.permutation(members)[:k]] = True
    return is_open


def chronological_parts(user: np.ndarray, *, min_interactions: int = MIN_INTERACTIONS) -> np.ndarray:
    """Per row: 0 train, 1 val, 2 test, or -1 when the user has too few rows and is dropped.

    ``user`` must be grouped with each user's rows in time order (the Interactions invariant).
    A user with ``n`` rows keeps rows ``[0, ⌊0.6n⌋)`` for train, ``[⌊0.6n⌋, ⌊0.8n⌋)`` for val and the
    rest for test (integer arithmetic, so no float rounding surprises): every part is non-empty
    exactly when ``n ≥ 3``.
    """
    if min_interactions < MIN_INTERACTIONS:
        raise ConfigError(f"min_interactions must be ≥ {MIN_INTERACTIONS}, got {min_interactions}")
    n_rows = len(user)
    if n_rows == 0:
        return np.zeros(0, dtype=np.int8)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    counts = np.diff(np.r_[starts, n_rows])
    count = np.repeat(counts, counts)
    rank = np.arange(n_rows) - np.repeat(starts, counts)
    parts = np.where(rank < (6 * count) // 10, 0, np.where(rank < (8 * count) // 10, 1, 2)).astype(np.int8)
    parts[count < min_interactions] = -1
    return parts


def time_cut(ts: np.ndarray, quantile: float = 0.5) -> int:
    """The cut timestamp for ``split="time"``: rows with ``ts < cut`` are the pre-training period."""
    quantile = _check_fraction("time_cut_quantile", quantile)
    if len(ts) == 0:
        raise ConfigError("time split: no interactions to cut")
    return int(np.quantile(ts, quantile, method="higher"))
