"""The server side of a simulated round: LDP on each client's upload, then ``aggregate_bank``.

The aggregation rule itself is :func:`fedpa.aggregation.aggregate_bank` — the function the HTTP
aggregator calls — so the simulation and the service agree. What this module adds is the bridge
from the engine's stacked deltas (``{param: [U, ...]}``) to that function:

* ``exact`` path: one :class:`~fedpa.aggregation.ClientUpdate` per client (numpy views, no copies),
  every option handled by ``aggregate_bank`` itself. Needed for trimmed mean and median.
* ``fast`` path (weighted mean only): :class:`fedpa.aggregation.StreamingMean`, the same arithmetic
  pre-reduced over stacked arrays a chunk of clients at a time, which lives beside
  ``aggregate_bank`` and is proven equal to it there (``tests/fedpa/test_aggregation.py``);
  ``tests/fedpa/sim/test_server.py`` shows both paths give the same bank from the engine's deltas.

Usage: ``bank, report = aggregate_round(bank, spec, deltas, values, weights, AggregationConfig())``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from fedpa.aggregation import AggregationReport, ClientUpdate, StreamingMean, aggregate_bank, make_strategy
from fedpa.errors import ConfigError
from fedpa.privacy import PrivacyConfig, clip_and_noise
from fedpa.schedule import round_rng
from fedpa.state import SharedStateSpec

__all__ = ["AggregationConfig", "aggregate_round", "apply_ldp", "client_updates", "streaming_mean", "wire_names"]


@dataclass(frozen=True)
class AggregationConfig:
    """Server options of docs/design.md §3 (names as in ``aggregate_bank``)."""

    strategy: str = "mean"  # mean | trimmed-mean | median (the aggregator's `strategy` setting)
    trim_beta: float = 0.1
    server_lr: float = 1.0
    min_reporters: int = 1
    weight_cap: float | None = None
    norm_bound: float | None = None

    def __post_init__(self) -> None:
        make_strategy(self.strategy, trim_beta=self.trim_beta)  # validates the name and beta
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


def apply_ldp(deltas: Mapping[str, Tensor], users: np.ndarray, privacy: PrivacyConfig, *, seed: int,
              round: int) -> dict[str, Tensor]:
    """Each client (``deltas[param][i]`` from user ``users[i]``) clips and noises its own whole upload
    with its own generator (docs/design.md §4).

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


def streaming_mean(spec: SharedStateSpec, config: AggregationConfig) -> StreamingMean:
    """The weighted mean of a round's uploads, fed a chunk of clients at a time (the fast path)."""
    if config.strategy != "mean":
        raise ConfigError(f"the streaming accumulator computes the weighted mean, not {config.strategy!r}")
    return StreamingMean(spec, server_lr=config.server_lr, min_reporters=config.min_reporters,
                         weight_cap=config.weight_cap, norm_bound=config.norm_bound)


def aggregate_round(bank: Mapping[str, np.ndarray], spec: SharedStateSpec, deltas: Mapping[str, Tensor],
                    values: Mapping[str, np.ndarray], weights: np.ndarray, config: AggregationConfig, *,
                    exact: bool = False) -> tuple[dict[str, np.ndarray], AggregationReport]:
    """New bank from one round's uploads (``deltas[param][i]`` from the client with ``values[·][i]``).

    ``exact=True`` forces one ClientUpdate per client through ``aggregate_bank`` even for the mean.
    """
    weights = np.asarray(weights, np.float64)
    if not deltas or weights.size == 0:
        return {k: np.array(v, copy=True) for k, v in bank.items()}, AggregationReport()
    if config.strategy == "mean" and not exact:
        accumulator = streaming_mean(spec, config)
        accumulator.add({p: d.detach() for p, d in deltas.items()}, values, weights)
        return accumulator.finish(bank)
    updates = client_updates(deltas, spec, values, weights)
    return aggregate_bank(bank, updates, spec, strategy=make_strategy(config.strategy, trim_beta=config.trim_beta),
                          server_lr=config.server_lr, min_reporters=config.min_reporters,
                          weight_cap=config.weight_cap, norm_bound=config.norm_bound)
