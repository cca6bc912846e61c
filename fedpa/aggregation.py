"""Server-side aggregation rules (docs/design.md §3), pure numpy — Flower-style small strategies.

A *strategy* reduces the deltas of one shared tensor, reported by several clients, to one delta.
:func:`aggregate_bank` applies a strategy to the whole bank with FedPA's partition: gate tensors
across all reporters, each group tensor only across the clients of that group value, skipped
below ``min_reporters``. The aggregator service and the simulation harness both call it, so the
HTTP path and the in-process simulation compute the same numbers.

Robustness against a hostile client (the aggregator's defaults, issue 16): each update is first
scaled to an L2 ``norm_bound`` (a number, or ``"median"``: the round's median update norm), the
updates of one client are merged into one vote (so thresholds and robust rules count clients, not
uploads), each client's weight is capped, and :func:`check_step` refuses a result that is not finite
or moves a tensor further than a bound. :func:`ldp_norm_bound` is the norm an honest clipped and
noised LDP update stays under, from which the server derives its default bound.

:class:`StreamingMean` is the weighted-mean case of :func:`aggregate_bank` for uploads that arrive
as stacked arrays a chunk of clients at a time (the simulation: 100k+ clients per round in bounded
memory); ``tests/fedpa/test_aggregation.py`` proves it equal to :func:`aggregate_bank`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from fedpa.errors import ConfigError, FedPAError
from fedpa.state import SharedStateSpec

__all__ = [
    "AggregationReport",
    "ClientUpdate",
    "CoordinateMedian",
    "Strategy",
    "StreamingMean",
    "TrimmedMean",
    "UnsafeAggregationError",
    "WeightedMean",
    "aggregate_bank",
    "check_step",
    "ldp_norm_bound",
    "make_strategy",
]


class UnsafeAggregationError(FedPAError):
    """An aggregation result that must not become the shared state (non-finite, or too large a step)."""

    def __init__(self, detail: str, *, reason: str, tensor: str) -> None:
        super().__init__(detail)
        self.reason = reason  # "non_finite" or "step_too_large"
        self.tensor = tensor


@dataclass(frozen=True)
class ClientUpdate:
    """One client's reported deltas (wire names → arrays) and its aggregation weight."""

    deltas: Mapping[str, np.ndarray]
    weight: float  # example count (capped by the caller's policy)
    staleness: int = 0  # shared-state versions between the client's base and now (async mode)
    client: Hashable | None = None  # who sent it: updates of one client are merged into one vote


class Strategy(Protocol):
    """Reduce ``[n, *shape]`` stacked deltas with ``[n]`` weights to one ``shape`` delta."""

    def reduce(self, deltas: np.ndarray, weights: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class WeightedMean:
    """Example-weighted mean (FedAvg, McMahan et al. 2017)."""

    def reduce(self, deltas: np.ndarray, weights: np.ndarray) -> np.ndarray:
        w = weights / weights.sum()
        mean: np.ndarray = np.tensordot(w, deltas, axes=1)
        return mean


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
        trimmed: np.ndarray = ordered[k : n - k].mean(axis=0)
        return trimmed


@dataclass(frozen=True)
class CoordinateMedian:
    """Coordinate-wise median (Yin et al. 2018)."""

    def reduce(self, deltas: np.ndarray, weights: np.ndarray) -> np.ndarray:
        median: np.ndarray = np.median(deltas, axis=0)
        return median


def make_strategy(name: str, *, trim_beta: float = 0.1) -> Strategy:
    """Strategy by its CLI/config name: ``mean``, ``trimmed-mean`` or ``median``."""
    if name == "mean":
        return WeightedMean()
    if name == "trimmed-mean":
        return TrimmedMean(trim_beta)
    if name == "median":
        return CoordinateMedian()
    raise ConfigError(f"unknown aggregation strategy {name!r}; choose mean, trimmed-mean or median")


def ldp_norm_bound(*, clip_norm: float, noise_multiplier: float, mechanism: str, dim: int) -> float | None:
    """An L2 norm that an honest update, clipped to ``clip_norm`` and noised, exceeds with probability < 1e-3.

    Gaussian noise of std σC per coordinate has norm σC·χ_d, and P(χ_d ≥ √d + t) ≤ exp(−t²/2)
    (Lipschitz concentration): t = 4 gives 3·10⁻⁴. Laplace noise of scale b = σC has E X² = 2b²,
    Var X² = 20b⁴, so ‖X‖² ≤ b²(2d + 6√(20d)) beyond six standard deviations (its L1 clip also
    bounds the L2 norm by C). None without noise (``mechanism="none"``): nothing to derive from.
    """
    if mechanism == "none":
        return None
    if mechanism == "gaussian":
        return clip_norm * (1.0 + noise_multiplier * (math.sqrt(dim) + 4.0))
    if mechanism == "laplace":
        return clip_norm * (1.0 + noise_multiplier * math.sqrt(2.0 * dim + 6.0 * math.sqrt(20.0 * dim)))
    raise ConfigError(f"unknown LDP mechanism {mechanism!r}")


def check_step(old: Mapping[str, np.ndarray], new: Mapping[str, np.ndarray], *, max_step: float | None) -> None:
    """Refuse ``new`` if any tensor is not finite or moved more than ``max_step`` (L2) from ``old``.

    The last line of defence: whatever a rule or a client did, a non-finite or runaway state is
    never stored (a float32 overflow of a finite float64 mean shows up here as ``inf``).
    """
    for name, array in new.items():
        if not np.isfinite(array).all():
            raise UnsafeAggregationError(f"aggregated tensor {name!r} is not finite", reason="non_finite",
                                         tensor=name)
        if max_step is not None:
            step = float(np.linalg.norm((array.astype(np.float64) - old[name]).ravel()))
            if step > max_step:
                raise UnsafeAggregationError(f"aggregated tensor {name!r} moved by {step:.4g} (L2), more than the "
                                             f"bound {max_step:.4g}", reason="step_too_large", tensor=name)


def _merge_clients(clients: np.ndarray, deltas: np.ndarray, weights: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """``[n]`` client ids, ``[n, *shape]`` deltas, ``[n]`` weights → one weighted-mean delta and summed
    weight per distinct client (``[k, *shape]``, ``[k]``) and k."""
    unique, inverse = np.unique(clients, return_inverse=True)
    if len(unique) == len(clients):
        return deltas, weights, len(unique)
    totals = np.zeros(len(unique))
    np.add.at(totals, inverse, weights)
    sums = np.zeros((len(unique), *deltas.shape[1:]))
    np.add.at(sums, inverse, deltas * weights.reshape(-1, *([1] * (deltas.ndim - 1))))
    return sums / np.maximum(totals, 1e-300).reshape(-1, *([1] * (deltas.ndim - 1))), totals, len(unique)


def _check_step_options(server_lr: float, min_reporters: int) -> None:
    if not server_lr > 0 or min_reporters < 1:
        raise ConfigError(f"need server_lr > 0 and min_reporters ≥ 1, got {server_lr}, {min_reporters}")


def _norm_scales(norms: np.ndarray, bound: float) -> np.ndarray:
    """Each update's factor that scales it down to L2 norm ``bound`` (1 for updates within it)."""
    scales: np.ndarray = np.minimum(1.0, bound / np.maximum(norms, 1e-12))
    return scales


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
    weight_cap_median: float | None = None,
    norm_bound: float | Literal["median"] | None = None,
    staleness_exponent: float = 0.5,
) -> tuple[dict[str, np.ndarray], AggregationReport]:
    """Apply one aggregation step; returns the new bank (inputs untouched) and what happened.

    Each update is scaled down to ``norm_bound`` (``"median"``: the median update norm), weighted
    ``weight · (1 + staleness)^-staleness_exponent``; the updates of one ``client`` are merged into
    one (their weighted mean, their summed weight), whose weight is then capped at ``weight_cap``
    and at ``weight_cap_median`` × the median client weight. ``min_reporters`` and the strategy
    therefore count clients. Updates with ``client=None`` are each their own client.
    """
    _check_step_options(server_lr, min_reporters)
    strategy = strategy or WeightedMean()
    report = AggregationReport()
    new_bank = {name: np.array(array, copy=True) for name, array in bank.items()}
    if not updates:
        return new_bank, report

    weights = np.array([u.weight for u in updates], np.float64)
    weights = weights * (1.0 + np.array([u.staleness for u in updates], np.float64)) ** -staleness_exponent
    scales = np.ones(len(updates))
    if norm_bound is not None:
        norms = np.array([np.sqrt(sum(float(np.square(d, dtype=np.float64).sum()) for d in u.deltas.values()))
                          for u in updates])
        bound = float(np.median(norms)) if norm_bound == "median" else float(norm_bound)
        scales = _norm_scales(norms, bound)
    keys: dict[Hashable, int] = {}
    client_of = [keys.setdefault(("update", i) if u.client is None else u.client, len(keys))
                 for i, u in enumerate(updates)]
    client_ids = np.array(client_of)
    totals = np.zeros(len(keys))
    np.add.at(totals, client_ids, weights)
    cap = np.inf if weight_cap is None else weight_cap
    if weight_cap_median is not None:
        cap = min(cap, weight_cap_median * float(np.median(totals)))

    for t in spec.tensors:
        idx = [i for i, u in enumerate(updates) if t.name in u.deltas]
        key = "gate" if t.role == "gate" else f"{t.attribute}={t.value}"
        if not idx:
            continue
        stacked, client_weights, n_clients = _merge_clients(
            client_ids[idx], np.stack([updates[i].deltas[t.name].astype(np.float64) * scales[i] for i in idx]),
            weights[idx])
        report.reporters[key] = n_clients
        if t.role == "group" and n_clients < min_reporters:
            report.skipped_groups[key] = n_clients
            continue
        delta = strategy.reduce(stacked, np.minimum(client_weights, cap))
        with np.errstate(over="ignore"):  # an overflow to ±inf is what check_step refuses
            new_bank[t.name] = (bank[t.name] + server_lr * delta).astype(np.float32)
        report.updated.append(t.name)
    return new_bank, report


_CHUNK = 16384  # clients per float64 partial sum (bounds memory at 100k+ clients)


class StreamingMean:
    """:func:`aggregate_bank` with :class:`WeightedMean`, fed stacked uploads a chunk of clients at a time.

    Keeps, per shared tensor and group value, ``Σ w_i s_i Δ_i`` in float64 (``s_i`` the norm-bound
    scale, ``w_i`` the capped weight — the same rules as :func:`aggregate_bank`), ``Σ w_i`` and the
    reporter count; :meth:`finish` hands each mean to :func:`aggregate_bank` as one pre-averaged update
    per tensor group, which applies the server learning rate and the float32 cast, and checks
    ``min_reporters`` on the true counts. Every upload is its own client (one upload per client and
    round), with no staleness; a ``"median"`` norm bound needs every norm at once and is refused.

    Usage: ``mean = StreamingMean(spec, weight_cap=64.0); mean.add(deltas, values, weights); mean.finish(bank)``.
    """

    def __init__(self, spec: SharedStateSpec, *, server_lr: float = 1.0, min_reporters: int = 1,
                 weight_cap: float | None = None, norm_bound: float | None = None) -> None:
        _check_step_options(server_lr, min_reporters)
        if norm_bound is not None and not isinstance(norm_bound, int | float):
            raise ConfigError(f"the streaming mean needs a numeric norm bound, got {norm_bound!r}")
        self.spec = spec
        self.server_lr, self.min_reporters = server_lr, min_reporters
        self.weight_cap, self.norm_bound = weight_cap, norm_bound
        self.names = {(t.param, t.value): t.name for t in spec.tensors}
        self.owner = {t.param: t.attribute for t in spec.tensors}
        cards: dict[str | None, int] = {None: 1}  # None: the gate, one "value"
        cards.update(spec.attributes)
        self.sums: dict[str, np.ndarray] = {}
        self.wsum = {a: np.zeros(c) for a, c in cards.items()}
        self.counts = {a: np.zeros(c, np.int64) for a, c in cards.items()}

    def add(self, deltas: Mapping[str, npt.ArrayLike], values: Mapping[str, np.ndarray], weights: np.ndarray) -> None:
        """Accumulate clients' uploads: ``deltas[param][i]`` (any array-like, e.g. a CPU tensor) from
        the client with group values ``values[attribute][i]`` and weight ``weights[i]``."""
        arrays = {p: np.asarray(d) for p, d in deltas.items()}
        w = np.asarray(weights, np.float64)
        if self.weight_cap is not None:
            w = np.minimum(w, self.weight_cap)
        coef = w.copy()
        if self.norm_bound is not None:
            sq = sum(np.square(a.reshape(len(w), -1), dtype=np.float64).sum(1) for a in arrays.values())
            coef *= _norm_scales(np.sqrt(sq), float(self.norm_bound))
        mix: dict[str | None, np.ndarray] = {}
        for a in self.counts:
            v = np.zeros(len(w), np.int64) if a is None else np.asarray(values[a], np.int64)
            mix[a] = np.zeros((len(self.counts[a]), len(w)))  # [V, U]: client i's coefficient at its value
            mix[a][v, np.arange(len(w))] = coef
            np.add.at(self.wsum[a], v, w)
            self.counts[a] += np.bincount(v, minlength=len(self.counts[a]))
        for p, d in arrays.items():
            m = mix[self.owner[p]]
            total = self.sums.setdefault(p, np.zeros((m.shape[0], d[0].size)))
            for i in range(0, len(d), _CHUNK):  # float64 like aggregate_bank, bounded memory
                total += m[:, i : i + _CHUNK] @ d[i : i + _CHUNK].reshape(-1, d[0].size).astype(np.float64)

    def finish(self, bank: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], AggregationReport]:
        """The new bank (inputs untouched) and what happened, as :func:`aggregate_bank` reports it."""
        shapes = {t.param: t.shape for t in self.spec.tensors}
        report = AggregationReport()
        gate: dict[str, np.ndarray] = {}
        per_group: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        for p, total in self.sums.items():
            a = self.owner[p]
            for value in np.flatnonzero(self.counts[a]):
                mean = (total[value] / self.wsum[a][value]).reshape(shapes[p])
                if a is None:
                    gate[self.names[(p, None)]] = mean
                else:
                    per_group.setdefault((a, int(value)), {})[self.names[(p, int(value))]] = mean
        virtual = [ClientUpdate(deltas=gate, weight=1.0)] if gate else []
        if gate:
            report.reporters["gate"] = int(self.counts[None][0])
        for (a, code), tensors in per_group.items():
            n = int(self.counts[a][code])
            report.reporters[f"{a}={code}"] = n
            if n < self.min_reporters:
                report.skipped_groups[f"{a}={code}"] = n
            else:
                virtual.append(ClientUpdate(deltas=tensors, weight=1.0))
        new_bank, inner = aggregate_bank(bank, virtual, self.spec, strategy=WeightedMean(), server_lr=self.server_lr)
        report.updated = inner.updated
        return new_bank, report
