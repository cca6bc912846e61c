"""What the new inputs are and how they are smoothed: one :class:`SignalSpec`, stored in the schema.

Issue 14 adds three input *kinds*, each as extra integer-code columns of ``x``:

* ``item_stats`` — item statistics from the open log as of the row's time (``source="item_table"``);
* ``item_code`` — a frequent-item identity code (``source="item_table"``);
* ``history`` — the user's own earlier rows, per item-field value (``source="history"``).

Click-rates are smoothed towards a prior with pseudo-counts (a Beta prior's mean), so an item or a
value seen twice does not claim a click-rate of 0 or 1. The same formula serves the dataset
pipeline, the item-table builder and the device's :class:`~fedpa.signals.HistoryState`.

Usage: ``spec = SignalSpec.from_dict(schema.signals)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from fedpa.errors import ConfigError

__all__ = ["FEATURE_SETS", "SIGNAL_KINDS", "SignalSpec", "select_kinds", "smoothed_ctr"]

SIGNAL_KINDS: tuple[str, ...] = ("item_stats", "item_code", "history")
FEATURE_SETS: tuple[str, ...] = ("base", "full")


def smoothed_ctr(clicks: np.ndarray | float, impressions: np.ndarray | float, prior: np.ndarray | float,
                 strength: float) -> np.ndarray:
    """``(clicks + strength·prior) / (impressions + strength)``: the posterior mean under a Beta prior."""
    return (np.asarray(clicks, np.float64) + strength * np.asarray(prior, np.float64)) / (
        np.asarray(impressions, np.float64) + strength)


def select_kinds(features: str = "full", without: Iterable[str] | str | None = None) -> tuple[str, ...]:
    """The kinds selected by ``--features base|full`` minus ``--without a,b`` (for ablations).

    ``base`` is today's inputs (no kinds); ``full`` all of ``SIGNAL_KINDS``; unknown names are errors.
    """
    if features not in FEATURE_SETS:
        raise ConfigError(f"--features must be one of {FEATURE_SETS}, got {features!r}")
    if isinstance(without, str):
        without = [w for w in without.split(",") if w.strip()]
    drop = {w.strip() for w in without or ()}
    unknown = sorted(drop - set(SIGNAL_KINDS))
    if unknown:
        raise ConfigError(f"--without: unknown input kind {unknown[0]!r} (expected some of {SIGNAL_KINDS})")
    if features == "base":
        if drop:
            raise ConfigError("--without only applies to --features full (base has no optional inputs)")
        return ()
    return tuple(k for k in SIGNAL_KINDS if k not in drop)


@dataclass(frozen=True)
class SignalSpec:
    """The selected kinds and the smoothing constants (pseudo-counts) shared by every component."""

    kinds: tuple[str, ...] = SIGNAL_KINDS
    prior_ctr: float = 0.5  # the open training rows' click-rate; set by the dataset pipeline
    item_smoothing: float = 20.0  # item CTR: pseudo-impressions at prior_ctr
    group_smoothing: float = 20.0  # item CTR within a group value: pseudo-impressions at the item's CTR
    user_smoothing: float = 10.0  # the user's overall CTR (history): pseudo-impressions at prior_ctr
    history_smoothing: float = 5.0  # the user's CTR on one item-field value: pseudo-impressions at the user's CTR
    item_code_min_count: int = 2  # items with fewer open training rows share the OOV code 0
    item_code_cap: int = 2048  # at most this many item codes (embedding rows ship in the bundle)
    stats_from: Literal["open", "all"] = "open"  # "all" = central ceiling (research only, never shipped)
    history_fields: tuple[str, ...] = ()  # item features whose values the history counts; () = none yet

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in SIGNAL_KINDS]
        if unknown:
            raise ConfigError(f"unknown input kind {unknown[0]!r} (expected some of {SIGNAL_KINDS})")
        if not 0.0 < self.prior_ctr < 1.0:
            raise ConfigError(f"prior_ctr must be in (0, 1), got {self.prior_ctr}")
        for name in ("item_smoothing", "group_smoothing", "user_smoothing", "history_smoothing"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.item_code_min_count < 1 or self.item_code_cap < 1:
            raise ConfigError(f"item_code_min_count and item_code_cap must be ≥ 1, got "
                              f"{self.item_code_min_count}, {self.item_code_cap}")
        if self.stats_from not in ("open", "all"):
            raise ConfigError(f"stats_from must be 'open' or 'all', got {self.stats_from!r}")

    def has(self, kind: str) -> bool:
        """Whether ``kind`` is selected."""
        return kind in self.kinds

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (lists for tuples) for the schema's ``signals`` entry."""
        d = asdict(self)
        d["kinds"] = list(self.kinds)
        d["history_fields"] = list(self.history_fields)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SignalSpec:
        """Inverse of :meth:`to_dict`; an empty dict (a base schema) selects no kinds."""
        if not d:
            return cls(kinds=())
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"feature schema signals: unknown key {unknown[0]!r}")
        values: dict[str, Any] = dict(d)
        for key in ("kinds", "history_fields"):
            if key in values:
                values[key] = tuple(str(v) for v in values[key])
        return cls(**values)
