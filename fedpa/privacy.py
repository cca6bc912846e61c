"""Local differential privacy on the device (SPEC §4): clip, noise, account.

Adjacency is add/remove of one user's whole update (the DP-SGD convention): after clipping to norm
C the mechanism's sensitivity is C, so Gaussian noise N(0, σ²C²I) per round is the Gaussian
mechanism with noise multiplier σ, and Laplace noise of scale σ·C on an L1-clipped update is
(1/σ)-DP per round. Composition over the rounds a user took part in is done by ``dp-accounting``
(RDP for Gaussian, PLD for Laplace). Everything is seeded through a ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fedpa.errors import ConfigError, PrivacyBudgetError

__all__ = [
    "ClipReport",
    "PrivacyConfig",
    "clip_and_noise",
    "epsilon_after",
    "noise_multiplier_for",
]

Mechanism = Literal["gaussian", "laplace", "none"]


@dataclass(frozen=True)
class PrivacyConfig:
    """What a device applies before every upload, and how much it may spend in total."""

    mechanism: Mechanism = "gaussian"
    clip_norm: float = 1.0  # C: L2 bound (L1 for Laplace) on the whole shared update
    noise_multiplier: float = 1.0  # σ: noise std (Laplace scale) in units of C
    delta: float = 1e-5
    epsilon_budget: float | None = None  # refuse uploads that would push ε past this

    def __post_init__(self) -> None:
        if self.mechanism not in ("gaussian", "laplace", "none"):
            raise ConfigError(f"mechanism must be gaussian, laplace or none, got {self.mechanism!r}")
        if not (self.clip_norm > 0 and math.isfinite(self.clip_norm)):
            raise ConfigError(f"clip_norm must be a positive finite number, got {self.clip_norm}")
        if self.mechanism != "none" and not (self.noise_multiplier > 0 and math.isfinite(self.noise_multiplier)):
            raise ConfigError(f"noise_multiplier must be > 0 with {self.mechanism} noise, got {self.noise_multiplier}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must satisfy 0 < δ < 1, got {self.delta}")
        if self.epsilon_budget is not None and not self.epsilon_budget > 0:
            raise ConfigError(f"epsilon_budget must be > 0, got {self.epsilon_budget}")

    def check_budget(self, rounds_done: int) -> float:
        """ε after one more upload; raises PrivacyBudgetError if that exceeds the budget."""
        eps = epsilon_after(rounds_done + 1, self)
        if self.epsilon_budget is not None and eps > self.epsilon_budget:
            spent = epsilon_after(rounds_done, self)
            raise PrivacyBudgetError(
                f"upload #{rounds_done + 1} would raise ε from {spent:.3f} to {eps:.3f}, "
                f"past the budget ε={self.epsilon_budget} (δ={self.delta})"
            )
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


def epsilon_after(rounds: int, config: PrivacyConfig) -> float:
    """(ε at the config's δ) of a user who uploaded in ``rounds`` rounds."""
    if rounds < 0:
        raise ConfigError(f"rounds must be ≥ 0, got {rounds}")
    if config.mechanism == "none" and rounds > 0:
        return math.inf
    if rounds == 0:
        return 0.0
    import dp_accounting  # heavy import, only where accounting is done
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
    from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

    if config.mechanism == "gaussian":
        accountant = RdpAccountant()
        event = dp_accounting.GaussianDpEvent(config.noise_multiplier)
    else:
        accountant = PLDAccountant()
        event = dp_accounting.LaplaceDpEvent(config.noise_multiplier)
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(config.delta))


def noise_multiplier_for(epsilon: float, rounds: int, *, delta: float = 1e-5,
                         mechanism: Mechanism = "gaussian") -> float:
    """Smallest σ (bisection) so that ``rounds`` uploads spend at most ε — for sweeps and defaults."""
    if not epsilon > 0:
        raise ConfigError(f"epsilon must be > 0, got {epsilon}")
    lo, hi = 1e-2, 1e3
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        eps = epsilon_after(rounds, PrivacyConfig(mechanism=mechanism, noise_multiplier=mid, delta=delta))
        lo, hi = (mid, hi) if eps > epsilon else (lo, mid)
    return hi
