"""Server-side aggregation rules (SPEC §3), pure numpy — Flower-style small strategies.

A *strategy* reduces the deltas of one shared tensor, reported by several clients, to one delta.
:func:`aggregate_bank` applies a strategy to the whole bank with FedPA's partition: gate tensors
across all reporters, each group tensor only across the clients of that group value, skipped
below ``min_reporters``. The aggregator service and the simulation harness both call it, so the
HTTP path and the in-process simulation compute the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fedpa.errors import ConfigError
from fedpa.state import SharedStateSpec

__all__ = [
    "AggregationReport",
    "ClientUpdate",
    "CoordinateMedian",
    "Strategy",
    "TrimmedMean",
    "WeightedMean",
    "aggregate_bank",
    "make_strategy",
]


@dataclass(frozen=True)
class ClientUpdate:
    """One client's reported deltas (wire names → arrays) and its aggregation weight."""

    deltas: Mapping[str, np.ndarray]
    weight: float  # example count (capped by the caller's policy)
    staleness: int = 0  # shared-state versions between the client's base and now (async mode)


class Strategy(Protocol):
    """Reduce ``[n, *shape]`` stacked deltas with ``[n]`` weights to one ``shape`` delta."""

    def reduce(self, deltas: np.ndarray, weights: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class WeightedMean:
    """Example-weighted mean (FedAvg, McMahan et al. 2017)."""

    def reduce(self, deltas: np.ndarray, weights: np.ndarray) -> np.ndarray:
        w = weights / weights.sum()
        return np.tensordot(w, deltas, axes=1)


@dataclass(frozen=True)
class TrimmedMean:
    """Coordinate-wise trimmed mean (Yin et al. 2018): drop the ``beta`` fraction at each end."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.beta < 0.5:
            raise ConfigError(f"trimmed-mean beta must be in [0, 0.5), got {self.beta}")

    def reduce(self, deltas: np.ndarray, weights: np.ndarray) -> np.ndarray:
        n = deltas.shape[0]
        k = int(np.floor(self.beta * n))
        ordered = np.sort(deltas, axis=0)
        return ordered[k : n - k].mean(axis=0)


@dataclass(frozen=True)
class CoordinateMedian:
    """Coordinate-wise median (Yin et al. 2018)."""

    def reduce(self, deltas: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.median(deltas, axis=0)


def make_strategy(name: str, *, trim_beta: float = 0.1) -> Strategy:
    """Strategy by its CLI/config name: ``mean``, ``trimmed-mean`` or ``median``."""
    if name == "mean":
        return WeightedMean()
    if name == "trimmed-mean":
        return TrimmedMean(trim_beta)
    if name == "median":
        return CoordinateMedian()
    raise ConfigError(f"unknown aggregation rule {name!r}; choose mean, trimmed-mean or median")


@dataclass
class AggregationReport:
    updated: list[str] = field(default_factory=list)  # tensor names that changed
    skipped_groups: dict[str, int] = field(default_factory=dict)  # "attr=value" → reporters (< min)
    reporters: dict[str, int] = field(default_factory=dict)  # "gate" / "attr=value" → reporters


def aggregate_bank(
    bank: Mapping[str, np.ndarray],
    updates: Sequence[ClientUpdate],
    spec: SharedStateSpec,
    *,
    strategy: Strategy | None = None,
    server_lr: float = 1.0,
    min_reporters: int = 1,
    weight_cap: float | None = None,
    norm_bound: float | None = None,
    staleness_exponent: float = 0.5,
) -> tuple[dict[str, np.ndarray], AggregationReport]:
    """Apply one aggregation step; returns the new bank (inputs untouched) and what happened.

    Weights are ``min(weight, weight_cap) · (1 + staleness)^-staleness_exponent``; with
    ``norm_bound`` each client's whole update is first scaled down to that L2 norm.
    """
    if server_lr <= 0 or min_reporters < 1:
        raise ConfigError(f"need server_lr > 0 and min_reporters ≥ 1, got {server_lr}, {min_reporters}")
    strategy = strategy or WeightedMean()
    report = AggregationReport()
    new_bank = {name: np.array(array, copy=True) for name, array in bank.items()}
    if not updates:
        return new_bank, report

    weights = np.array([u.weight for u in updates], np.float64)
    if weight_cap is not None:
        weights = np.minimum(weights, weight_cap)
    weights = weights * (1.0 + np.array([u.staleness for u in updates], np.float64)) ** -staleness_exponent
    scales = np.ones(len(updates))
    if norm_bound is not None:
        norms = np.array([np.sqrt(sum(float(np.square(d, dtype=np.float64).sum()) for d in u.deltas.values()))
                          for u in updates])
        scales = np.minimum(1.0, norm_bound / np.maximum(norms, 1e-12))

    for t in spec.tensors:
        idx = [i for i, u in enumerate(updates) if t.name in u.deltas]
        key = "gate" if t.role == "gate" else f"{t.attribute}={t.value}"
        if not idx:
            continue
        report.reporters[key] = len(idx)
        if t.role == "group" and len(idx) < min_reporters:
            report.skipped_groups[key] = len(idx)
            continue
        stacked = np.stack([updates[i].deltas[t.name].astype(np.float64) * scales[i] for i in idx])
        delta = strategy.reduce(stacked, weights[idx])
        new_bank[t.name] = (bank[t.name] + server_lr * delta).astype(np.float32)
        report.updated.append(t.name)
    return new_bank, report
