"""Local differential privacy on the device (docs/design.md §4): clip, noise, account — under the device's policy.

**Adjacency is replacement** — the standard one for local DP: the server must not tell *any* two
inputs of one user apart. After clipping the whole shared update to norm C, two updates differ by
at most 2C, so Gaussian noise N(0, σ²C²I) is the Gaussian mechanism with effective noise
multiplier σ/2 (Laplace noise of scale σ·C on an L1-clipped update: (2/σ)-DP). The add/remove
figure (one user's update vs none, sensitivity C) is what DP-SGD reports; it is available
labelled, never as the default. Composition over a user's uploads is done by ``dp-accounting``
(RDP for Gaussian, PLD when Laplace is involved), each upload with **its own** σ: the device
records what it actually applied (:class:`Upload`) and never trusts a server's claim.

The device's own floor is a :class:`DevicePolicy` (min σ, max C, ε budget, δ): a bundle whose
settings fall below it is refused, and uploads past the budget are refused on the device.

Everything random is seeded through a ``numpy.random.Generator`` the caller passes (production
callers draw a fresh one from OS entropy per upload: :func:`secure_rng`).
"""

from __future__ import annotations

import math
import secrets
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np

from fedpa.errors import ConfigError, PrivacyBudgetError, PrivacyPolicyError

if TYPE_CHECKING:
    from fedpa.manifest import PrivacySettings

__all__ = [
    "DEFAULT_EPSILON_BUDGET",
    "DEFAULT_MAX_CLIP_NORM",
    "UNBOUNDED",
    "Adjacency",
    "ClipReport",
    "CountReport",
    "DevicePolicy",
    "Mechanism",
    "PrivacyConfig",
    "Upload",
    "clip_and_noise",
    "epsilon_after",
    "epsilon_of",
    "noise_multiplier_for",
    "report_example_count",
    "report_example_counts",
    "secure_rng",
]

Mechanism = Literal["gaussian", "laplace", "none"]
Adjacency = Literal["replacement", "add_remove"]
CountReport = Literal["exact", "bounded", "coarse", "none"]

DEFAULT_EPSILON_BUDGET = 8.0  # per user, over every upload the device ever makes
DEFAULT_DELTA = 1e-5
DEFAULT_MAX_CLIP_NORM = 1.0
# What leaves the device as an upload's example count (the server's aggregation weight). Measured
# in docs/RESULTS.md §5: weighting by the exact, bounded or coarse count is within seed noise of
# sending nothing (a constant 1, an unweighted mean) — so the device sends nothing.
EXAMPLE_COUNT_REPORT: CountReport = "none"
EXAMPLE_COUNT_CAP = 64
# What an update without LDP declares as its clip norm and ε: the protocol wants finite numbers,
# and "no bound at all" is the honest value (never 0, which would claim perfect privacy).
UNBOUNDED = sys.float_info.max


def _check_sigma(mechanism: str, sigma: float) -> None:
    if mechanism not in ("gaussian", "laplace", "none"):
        raise ConfigError(f"mechanism must be gaussian, laplace or none, got {mechanism!r}")
    if mechanism != "none" and not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"noise_multiplier must be a positive finite number with {mechanism} noise, got {sigma}")


@dataclass(frozen=True)
class Upload:
    """What one upload actually applied: the accountant's unit (the clip norm does not change ε)."""

    mechanism: Mechanism
    noise_multiplier: float
    clip_norm: float

    def __post_init__(self) -> None:
        _check_sigma(self.mechanism, self.noise_multiplier)


@dataclass(frozen=True)
class PrivacyConfig:
    """What a device applies before every upload, and how much it may spend in total.

    The one LDP config. Its two JSON forms carry the same fields and convert only through their
    constructors: a bundle's request (``fedpa.manifest.PrivacySettings.requesting``) and what an
    upload declares it applied (``fedpa.protocol.UpdatePrivacy.applied``); a device turns a request
    into the config it applies only under its own policy (:meth:`DevicePolicy.config_for`).
    """

    mechanism: Mechanism = "gaussian"
    clip_norm: float = 1.0  # C: L2 bound (L1 for Laplace) on the whole shared update
    noise_multiplier: float = 1.0  # σ: noise std (Laplace scale) in units of C
    delta: float = DEFAULT_DELTA
    epsilon_budget: float | None = None  # refuse uploads that would push ε past this

    def __post_init__(self) -> None:
        _check_sigma(self.mechanism, self.noise_multiplier)
        if not (self.clip_norm > 0 and math.isfinite(self.clip_norm)):
            raise ConfigError(f"clip_norm must be a positive finite number, got {self.clip_norm}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must satisfy 0 < δ < 1, got {self.delta}")
        if self.epsilon_budget is not None and not (self.epsilon_budget > 0 and math.isfinite(self.epsilon_budget)):
            raise ConfigError(f"epsilon_budget must be a positive finite number, got {self.epsilon_budget}")

    @property
    def upload(self) -> Upload:
        return Upload(self.mechanism, self.noise_multiplier if self.mechanism != "none" else 0.0, self.clip_norm)

    def check_budget(self, spent: int | Sequence[Upload]) -> float:
        """ε after one more upload with these settings; PrivacyBudgetError if that passes the budget.

        ``spent`` is what the device already sent (its ledger), or a count of uploads made with
        these very settings.
        """
        ledger = [self.upload] * spent if isinstance(spent, int) else list(spent)
        eps = epsilon_of([*ledger, self.upload], delta=self.delta)
        if self.epsilon_budget is not None and eps > self.epsilon_budget:
            before = epsilon_of(ledger, delta=self.delta)
            raise PrivacyBudgetError(
                f"privacy budget spent: upload #{len(ledger) + 1} (σ={self.upload.noise_multiplier:g}) would raise "
                f"ε from {before:.3f} to {eps:.3f}, past this device's budget ε={self.epsilon_budget:g} "
                f"(δ={self.delta:g}, replacement adjacency); no update was trained or sent")
        return eps


@dataclass(frozen=True)
class ClipReport:
    norm_before: float
    norm_after_clip: float
    clipped: bool


def clip_and_noise(update: Mapping[str, np.ndarray], *, clip_norm: float, noise_multiplier: float,
                   rng: np.random.Generator, mechanism: Mechanism = "gaussian"
                   ) -> tuple[dict[str, np.ndarray], ClipReport]:
    """Clip the whole update (all tensors as one vector) to norm C, then add noise of scale σ·C.

    Usage: ``noised, report = clip_and_noise(deltas, clip_norm=1.0, noise_multiplier=1.1, rng=rng)``.
    """
    PrivacyConfig(mechanism=mechanism, clip_norm=clip_norm, noise_multiplier=noise_multiplier)
    order = 1 if mechanism == "laplace" else 2
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in update.values()]) if update else np.zeros(0)
    norm = float(np.linalg.norm(flat, ord=order)) if flat.size else 0.0
    factor = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    out: dict[str, np.ndarray] = {}
    for name, array in update.items():
        clipped = np.asarray(array, np.float64) * factor
        if mechanism == "gaussian":
            clipped = clipped + rng.normal(0.0, noise_multiplier * clip_norm, size=clipped.shape)
        elif mechanism == "laplace":
            clipped = clipped + rng.laplace(0.0, noise_multiplier * clip_norm, size=clipped.shape)
        out[name] = clipped.astype(np.float32)
    return out, ClipReport(norm_before=norm, norm_after_clip=norm * factor, clipped=factor < 1.0)


def secure_rng() -> np.random.Generator:
    """A fresh generator from 256 bits of OS entropy (``secrets``) — one per upload on a real device.

    Each upload's noise comes from its own unpredictable seed, so neither an earlier upload nor a
    guessable seed tells anyone the next noise draw. Tests and simulations pass a seeded
    ``numpy.random.default_rng(seed)`` to :func:`clip_and_noise` instead.
    """
    return np.random.default_rng(secrets.randbits(256))


def report_example_count(n: int, how: CountReport = EXAMPLE_COUNT_REPORT) -> int:
    """The example count an upload declares (the server's aggregation weight), not the exact one.

    ``exact``: n (reveals how much the user interacted); ``bounded``: min(n, 64); ``coarse``: the
    power of two at or below min(n, 64) (7 possible values); ``none``: always 1 (unweighted mean).
    """
    if n < 1:
        raise ConfigError(f"example count must be ≥ 1, got {n}")
    if how == "exact":
        return int(n)
    if how == "none":
        return 1
    bounded = min(int(n), EXAMPLE_COUNT_CAP)
    if how == "bounded":
        return bounded
    if how == "coarse":
        return 1 << (bounded.bit_length() - 1)
    raise ConfigError(f"example-count report must be exact, bounded, coarse or none, got {how!r}")


def report_example_counts(counts: np.ndarray, how: CountReport = EXAMPLE_COUNT_REPORT) -> np.ndarray:
    """:func:`report_example_count` over an array (the simulation's per-client weights); 0 stays 0."""
    c = np.asarray(counts, dtype=np.int64)
    if how == "exact":
        return c
    if how == "none":
        return (c > 0).astype(np.int64)
    bounded = np.minimum(c, EXAMPLE_COUNT_CAP)
    if how == "bounded":
        return bounded
    if how == "coarse":
        return np.where(c > 0, 1 << np.floor(np.log2(np.maximum(bounded, 1))).astype(np.int64), 0)
    raise ConfigError(f"example-count report must be exact, bounded, coarse or none, got {how!r}")


def epsilon_of(uploads: Iterable[Upload], *, delta: float = DEFAULT_DELTA,
               adjacency: Adjacency = "replacement") -> float:
    """(ε at δ) of a user who made ``uploads``, each with its own σ (heterogeneous composition).

    Usage: ``epsilon_of([Upload("gaussian", 0.5, 1.0)] * 4 + [Upload("gaussian", 5.0, 1.0)])``.
    """
    if not 0 < delta < 1:
        raise ConfigError(f"delta must satisfy 0 < δ < 1, got {delta}")
    if adjacency not in ("replacement", "add_remove"):
        raise ConfigError(f"adjacency must be replacement or add_remove, got {adjacency!r}")
    counts = Counter((u.mechanism, float(u.noise_multiplier)) for u in uploads)
    if not counts:
        return 0.0
    if any(m == "none" for m, _ in counts):
        return math.inf
    return _epsilon(tuple(sorted(counts.items())), delta, adjacency)


@lru_cache(maxsize=4096)
def _epsilon(groups: tuple[tuple[tuple[str, float], int], ...], delta: float, adjacency: str) -> float:
    import dp_accounting  # heavy import, only where accounting is done
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
    from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

    sensitivity = 2.0 if adjacency == "replacement" else 1.0  # in units of C
    events = []
    for (mechanism, sigma), n in groups:
        effective = sigma / sensitivity  # noise scale over the mechanism's sensitivity
        event = (dp_accounting.GaussianDpEvent(effective) if mechanism == "gaussian"
                 else dp_accounting.LaplaceDpEvent(effective))
        events.append(dp_accounting.SelfComposedDpEvent(event, n))
    laplace = any(m == "laplace" for (m, _), _ in groups)
    accountant = PLDAccountant() if laplace else RdpAccountant()
    accountant.compose(dp_accounting.ComposedDpEvent(events))
    return float(accountant.get_epsilon(delta))


def epsilon_after(rounds: int, config: PrivacyConfig, *, adjacency: Adjacency = "replacement") -> float:
    """(ε at the config's δ) of a user who uploaded in ``rounds`` rounds, all with this config."""
    if rounds < 0:
        raise ConfigError(f"rounds must be ≥ 0, got {rounds}")
    return epsilon_of([config.upload] * rounds, delta=config.delta, adjacency=adjacency)


def noise_multiplier_for(epsilon: float, rounds: int, *, delta: float = DEFAULT_DELTA,
                         mechanism: Mechanism = "gaussian", adjacency: Adjacency = "replacement") -> float:
    """Smallest σ (bisection) so that ``rounds`` uploads spend at most ε — for sweeps and defaults."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"epsilon must be a positive finite number, got {epsilon}")
    if rounds < 1:
        raise ConfigError(f"rounds must be ≥ 1, got {rounds}")
    return _sigma_for(float(epsilon), int(rounds), float(delta), mechanism, adjacency)


@lru_cache(maxsize=256)
def _sigma_for(epsilon: float, rounds: int, delta: float, mechanism: Mechanism, adjacency: Adjacency) -> float:
    lo, hi = 1e-2, 1e4
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        eps = epsilon_of([Upload(mechanism, mid, 1.0)] * rounds, delta=delta, adjacency=adjacency)
        lo, hi = (mid, hi) if eps > epsilon else (lo, mid)
    return hi


@dataclass(frozen=True)
class DevicePolicy:
    """The privacy a device gives no matter what a bundle asks: its floor and its total budget.

    ``min_noise_multiplier=None`` derives the floor from the budget: the σ that keeps the bundle's
    planned rounds within ``epsilon_budget`` (replacement adjacency) — so a default device gives
    ε ≤ 8 over the rounds the publisher planned, and refuses uploads past ε = 8 in any case.
    """

    epsilon_budget: float = DEFAULT_EPSILON_BUDGET
    delta: float = DEFAULT_DELTA
    min_noise_multiplier: float | None = None
    max_clip_norm: float = DEFAULT_MAX_CLIP_NORM

    def __post_init__(self) -> None:
        if not (self.epsilon_budget > 0 and math.isfinite(self.epsilon_budget)):
            raise ConfigError(f"epsilon budget must be a positive finite number, got {self.epsilon_budget}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must satisfy 0 < δ < 1, got {self.delta}")
        if self.min_noise_multiplier is not None and not (
                self.min_noise_multiplier > 0 and math.isfinite(self.min_noise_multiplier)):
            raise ConfigError(f"minimum noise multiplier must be a positive finite number, "
                              f"got {self.min_noise_multiplier}")
        if not (self.max_clip_norm > 0 and math.isfinite(self.max_clip_norm)):
            raise ConfigError(f"maximum clip norm must be a positive finite number, got {self.max_clip_norm}")

    def floor(self, rounds: int) -> float:
        """The smallest σ this device accepts for a bundle that plans ``rounds`` uploads per user."""
        if self.min_noise_multiplier is not None:
            return self.min_noise_multiplier
        return noise_multiplier_for(self.epsilon_budget, rounds, delta=self.delta)

    def config_for(self, settings: PrivacySettings, *, noise_multiplier: float | None = None,
                   clip_norm: float | None = None) -> PrivacyConfig:
        """The settings this device applies to a bundle: the bundle's (or the given stricter ones),
        checked against the floor; δ and the budget are always the device's own.

        Raises PrivacyPolicyError naming the value below the device's policy.
        """
        if settings.mechanism == "none":
            raise PrivacyPolicyError("the bundle asks for no LDP (mechanism 'none'); this device always adds noise")
        sigma = settings.noise_multiplier if noise_multiplier is None else noise_multiplier
        clip = settings.clip_norm if clip_norm is None else clip_norm
        floor = self.floor(settings.rounds)
        if not (math.isfinite(sigma) and sigma >= floor * (1 - 1e-9)):
            raise PrivacyPolicyError(
                f"noise multiplier σ={sigma:g} is below this device's floor σ ≥ {floor:.4g} (ε budget "
                f"{self.epsilon_budget:g} over {settings.rounds} planned rounds, δ={self.delta:g}); "
                "refusing the bundle's privacy settings")
        if not (math.isfinite(clip) and 0 < clip <= self.max_clip_norm):
            raise PrivacyPolicyError(f"clip norm C={clip:g} is above this device's maximum C ≤ {self.max_clip_norm:g}")
        return PrivacyConfig(mechanism=settings.mechanism, clip_norm=clip, noise_multiplier=sigma,
                             delta=self.delta, epsilon_budget=self.epsilon_budget)
