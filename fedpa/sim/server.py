"""The server side of a simulated round: LDP on each client's upload, then ``aggregate_bank``.

The aggregation rule itself is :func:`fedpa.aggregation.aggregate_bank` — the function the HTTP
aggregator calls — so the simulation and the service agree. What this module adds is the bridge
from the engine's stacked deltas (``{param: [U, ...]}``) to that function:

* ``exact`` path: one :class:`~fedpa.aggregation.ClientUpdate` per client (numpy views, no copies),
  every option handled by ``aggregate_bank`` itself. Needed for trimmed mean and median.
* ``fast`` path (weighted mean only): the same arithmetic pre-reduced in torch. For each shared
  tensor, ``Σ_i w_i s_i Δ_i / Σ_i w_i`` over its reporters (``s_i`` the norm-bound scale, ``w_i``
  the capped weight) is exactly what ``WeightedMean`` computes on the stacked per-client deltas;
  it is handed to ``aggregate_bank`` as one pre-averaged update per tensor group, which applies
  the server learning rate and the float32 cast. ``min_reporters`` is checked on the true counts.
  ``tests/sim/test_server.py`` shows both paths give the same bank.

Usage: ``bank, report = aggregate_round(bank, spec, deltas, values, weights, AggregationConfig())``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fedpa.aggregation import AggregationReport, ClientUpdate, WeightedMean, aggregate_bank, make_strategy
from fedpa.errors import ConfigError
from fedpa.privacy import PrivacyConfig, clip_and_noise
from fedpa.schedule import round_rng
from fedpa.state import SharedStateSpec

_CHUNK = 16384  # clients per float64 partial sum (bounds memory at 100k+ clients)

__all__ = ["AggregationConfig", "MeanAccumulator", "aggregate_round", "apply_ldp", "client_updates", "wire_names"]


@dataclass(frozen=True)
class AggregationConfig:
    """Server options of docs/design.md §3 (names as in ``aggregate_bank``)."""

    rule: str = "mean"  # mean | trimmed-mean | median
    trim_beta: float = 0.1
    server_lr: float = 1.0
    min_reporters: int = 1
    weight_cap: float | None = None
    norm_bound: float | None = None

    def __post_init__(self) -> None:
        make_strategy(self.rule, trim_beta=self.trim_beta)  # validates the name and beta
        if not self.server_lr > 0 or self.min_reporters < 1:
            raise ConfigError(f"need server_lr > 0 and min_reporters ≥ 1, got {self.server_lr}, {self.min_reporters}")


def wire_names(spec: SharedStateSpec) -> dict[tuple[str, int | None], str]:
    """(param, group value or None for the gate) → the tensor's wire name, read off the spec."""
    return {(t.param, t.value): t.name for t in spec.tensors}


def _attributes(spec: SharedStateSpec) -> dict[str, str | None]:
    return {t.param: t.attribute for t in spec.tensors}


def client_updates(deltas: Mapping[str, Tensor], spec: SharedStateSpec, values: Mapping[str, np.ndarray],
                   weights: np.ndarray) -> list[ClientUpdate]:
    """One ClientUpdate per client, wire-named, as the aggregator would receive them (views, no copy)."""
    names = wire_names(spec)
    owner = _attributes(spec)
    arrays = {p: d.detach().numpy() for p, d in deltas.items()}
    updates = []
    for i, w in enumerate(weights):
        d = {}
        for p, a in arrays.items():
            attribute = owner[p]
            d[names[(p, None if attribute is None else int(values[attribute][i]))]] = a[i]
        updates.append(ClientUpdate(deltas=d, weight=float(w)))
    return updates


def apply_ldp(deltas: Mapping[str, Tensor], spec: SharedStateSpec, values: Mapping[str, np.ndarray],
              users: np.ndarray, privacy: PrivacyConfig, *, seed: int, round: int) -> dict[str, Tensor]:
    """Each client clips and noises its own whole upload with its own generator (docs/design.md §4).

    The generator is ``round_rng(seed, user, round, stream=1)`` — the edge client's noise stream —
    so a simulated client's noise does not depend on who else takes part.
    """
    if privacy.mechanism == "none":
        return dict(deltas)
    out = {p: d.detach().clone() for p, d in deltas.items()}
    arrays = {p: d.numpy() for p, d in out.items()}  # shares memory with `out`
    for i, user in enumerate(users):
        update = {p: a[i] for p, a in arrays.items()}
        noised, _ = clip_and_noise(update, clip_norm=privacy.clip_norm, noise_multiplier=privacy.noise_multiplier,
                                   rng=round_rng(seed, int(user), round, stream=1), mechanism=privacy.mechanism)
        for p, a in noised.items():
            arrays[p][i] = a
    return out


def _norm_scales(deltas: Mapping[str, Tensor], bound: float | None) -> Tensor:
    n = next(iter(deltas.values())).shape[0]
    if bound is None:
        return torch.ones(n, dtype=torch.float64)
    sq = sum(d.double().flatten(1).square().sum(1) for d in deltas.values())
    return torch.clamp(bound / torch.clamp(torch.sqrt(sq), min=1e-12), max=1.0)  # aggregate_bank's rule


class MeanAccumulator:
    """The weighted mean of a round's uploads, fed a chunk of clients at a time (the fast path).

    Keeps, per shared tensor and group value, ``Σ w_i s_i Δ_i`` in float64 (like ``aggregate_bank``),
    ``Σ w_i`` and the reporter count; :meth:`finish` hands the means to ``aggregate_bank``. Feeding
    clients in chunks lets a 1M-client round stream through bounded memory.
    """

    def __init__(self, spec: SharedStateSpec, config: AggregationConfig) -> None:
        if config.rule != "mean":
            raise ConfigError(f"the streaming accumulator computes the weighted mean, not {config.rule!r}")
        self.spec, self.config = spec, config
        self.names, self.owner, self.cards = wire_names(spec), _attributes(spec), spec.attributes
        self.sums: dict[str, Tensor] = {}
        self.wsum = {a: torch.zeros(c, dtype=torch.float64) for a, c in {None: 1, **self.cards}.items()}
        self.counts = {a: np.zeros(c, np.int64) for a, c in {None: 1, **self.cards}.items()}

    def add(self, deltas: Mapping[str, Tensor], values: Mapping[str, np.ndarray], weights: np.ndarray) -> None:
        """Accumulate clients' deltas (``deltas[p][i]`` from the client with ``values[·][i]``)."""
        w = torch.as_tensor(np.asarray(weights, np.float64))
        if self.config.weight_cap is not None:
            w = torch.clamp(w, max=self.config.weight_cap)
        coef = w * _norm_scales(deltas, self.config.norm_bound)  # per client: weight × norm-bound scale
        index = {None: np.zeros(len(w), np.int64), **{a: np.asarray(values[a], np.int64) for a in self.cards}}
        mix: dict[str | None, Tensor] = {}
        for a, v in index.items():
            mix[a] = torch.zeros(len(self.counts[a]), len(w), dtype=torch.float64)  # [V, U]
            mix[a][torch.as_tensor(v), torch.arange(len(w))] = coef
            self.wsum[a].index_add_(0, torch.as_tensor(v), w)
            self.counts[a] += np.bincount(v, minlength=len(self.counts[a]))
        for p, d in deltas.items():
            m = mix[self.owner[p]]
            total = self.sums.setdefault(p, torch.zeros(m.shape[0], d[0].numel(), dtype=torch.float64))
            for i in range(0, len(d), _CHUNK):  # float64 like aggregate_bank, bounded memory
                total += m[:, i : i + _CHUNK] @ d[i : i + _CHUNK].flatten(1).double()

    def finish(self, bank: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], AggregationReport]:
        """Apply the means through ``aggregate_bank`` (server lr, float32 cast); report counts."""
        shapes = {t.param: t.shape for t in self.spec.tensors}
        report = AggregationReport()
        gate: dict[str, np.ndarray] = {}
        per_group: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        for p, total in self.sums.items():
            a = self.owner[p]
            for value in np.flatnonzero(self.counts[a]):
                mean = (total[value] / self.wsum[a][value]).view(shapes[p]).numpy()
                if a is None:
                    gate[self.names[(p, None)]] = mean
                else:
                    per_group.setdefault((a, int(value)), {})[self.names[(p, int(value))]] = mean
        virtual = [ClientUpdate(deltas=gate, weight=1.0)] if gate else []
        if gate:
            report.reporters["gate"] = int(self.counts[None][0])
        for (a, value), tensors in per_group.items():
            n = int(self.counts[a][value])
            report.reporters[f"{a}={value}"] = n
            if n < self.config.min_reporters:
                report.skipped_groups[f"{a}={value}"] = n
            else:
                virtual.append(ClientUpdate(deltas=tensors, weight=1.0))
        new_bank, inner = aggregate_bank(bank, virtual, self.spec, strategy=WeightedMean(),
                                         server_lr=self.config.server_lr)
        report.updated = inner.updated
        return new_bank, report


def aggregate_round(bank: Mapping[str, np.ndarray], spec: SharedStateSpec, deltas: Mapping[str, Tensor],
                    values: Mapping[str, np.ndarray], weights: np.ndarray, config: AggregationConfig, *,
                    exact: bool = False) -> tuple[dict[str, np.ndarray], AggregationReport]:
    """New bank from one round's uploads (``deltas[param][i]`` from the client with ``values[·][i]``).

    ``exact=True`` forces one ClientUpdate per client through ``aggregate_bank`` even for the mean.
    """
    weights = np.asarray(weights, np.float64)
    if not deltas or weights.size == 0:
        return {k: np.array(v, copy=True) for k, v in bank.items()}, AggregationReport()
    if config.rule == "mean" and not exact:
        accumulator = MeanAccumulator(spec, config)
        accumulator.add(deltas, values, weights)
        return accumulator.finish(bank)
    updates = client_updates(deltas, spec, values, weights)
    return aggregate_bank(bank, updates, spec, strategy=make_strategy(config.rule, trim_beta=config.trim_beta),
                          server_lr=config.server_lr, min_reporters=config.min_reporters,
                          weight_cap=config.weight_cap, norm_bound=config.norm_bound)
