"""Ranking and calibration metrics (docs/design.md §5), numpy only.

GAUC is the headline: pooled AUC mostly rewards per-user click-rate bias (a "user's own click rate"
score matches the paper's numbers), while GAUC only credits ranking *within* each user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DeltaCI", "auc", "evaluate", "gauc", "gauc_delta_ci", "logloss", "per_user_auc", "weighted_precision"]


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC with ties counted half (Mann-Whitney); NaN if only one class is present."""
    y = np.asarray(y).astype(bool).ravel()
    score = np.asarray(score, np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(y.size, np.float64)
    sorted_scores = score[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def per_user_auc(user: np.ndarray, y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(users, auc, impressions)`` of every user with both classes, users in ascending order.

    One sort instead of a loop over users: the simulation scores every user after every round,
    and at 100,000 users a per-user loop alone takes seconds. Ties within a user count half.
    """
    user = np.asarray(user).ravel()
    pos = np.asarray(y).astype(bool).ravel()
    score = np.asarray(score, np.float64).ravel()
    if user.size == 0:
        return user[:0], np.zeros(0), np.zeros(0)
    order = np.lexsort((score, user))  # by user, then score
    u, s, pos = user[order], score[order], pos[order]
    new_user = np.r_[True, u[1:] != u[:-1]]
    user_id = np.cumsum(new_user) - 1  # dense 0..n_users-1 in sorted order
    user_start = np.flatnonzero(new_user)
    rank = np.arange(u.size) - user_start[user_id] + 1.0  # 1-based rank within the user
    new_tie = new_user | np.r_[True, s[1:] != s[:-1]]  # tied scores share their mean rank
    tie_id = np.cumsum(new_tie) - 1
    rank = (np.bincount(tie_id, weights=rank) / np.bincount(tie_id))[tie_id]
    n_users = user_start.size
    n = np.bincount(user_id, minlength=n_users).astype(np.float64)
    n_pos = np.bincount(user_id, weights=pos.astype(np.float64), minlength=n_users)
    n_neg = n - n_pos
    rank_pos = np.bincount(user_id, weights=np.where(pos, rank, 0.0), minlength=n_users)
    both = (n_pos > 0) & (n_neg > 0)
    per_user = (rank_pos[both] - n_pos[both] * (n_pos[both] + 1) / 2.0) / (n_pos[both] * n_neg[both])
    return u[user_start][both], per_user, n[both]


def gauc(user: np.ndarray, y: np.ndarray, score: np.ndarray) -> float:
    """Per-user AUC averaged with impression weights over users that have both classes; NaN if none."""
    _, per_user, weight = per_user_auc(user, y, score)
    if per_user.size == 0:
        return float("nan")
    return float((per_user * weight).sum() / weight.sum())


@dataclass(frozen=True)
class DeltaCI:
    """A paired GAUC difference (mean over the given runs) and its 95 % user-bootstrap interval."""

    delta: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.delta:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def gauc_delta_ci(runs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], *, n_boot: int = 2000,
                  seed: int = 0, level: float = 0.95) -> DeltaCI:
    """GAUC(a) − GAUC(b) on the same rows, averaged over runs, with a percentile user-bootstrap CI.

    ``runs`` holds one ``(user, y, score_a, score_b)`` per seed. Each replicate resamples every
    run's users with replacement (the unit that is independent is the user, not the row: rows of
    one user share that user's taste) and averages the runs' resampled differences, so the
    interval is that of the reported multi-seed mean. Usage: ``str(gauc_delta_ci([(u, y, a, b)]))``.
    """
    if not runs:
        raise ValueError("gauc_delta_ci needs at least one run")
    rng = np.random.default_rng(seed)
    point, boots = [], []
    for user, y, a, b in runs:
        if not len(user) == len(y) == len(a) == len(b):
            raise ValueError(f"gauc_delta_ci: scores a and b must be on the same rows "
                             f"({len(user)} users, {len(y)} labels, {len(a)} and {len(b)} scores)")
        ua, auc_a, w = per_user_auc(user, y, a)
        _, auc_b, _ = per_user_auc(user, y, b)
        d = auc_a - auc_b
        point.append(float((w * d).sum() / w.sum()))
        counts = rng.multinomial(ua.size, np.full(ua.size, 1.0 / ua.size), size=n_boot)  # [B, users]
        boots.append((counts @ (w * d)) / (counts @ w))
    mean_boot = np.mean(boots, axis=0)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(mean_boot, [alpha, 1.0 - alpha])
    return DeltaCI(float(np.mean(point)), float(low), float(high))


def logloss(y: np.ndarray, prob: np.ndarray, *, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(prob, np.float64).ravel(), eps, 1 - eps)
    y = np.asarray(y, np.float64).ravel()
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def weighted_precision(y: np.ndarray, prob: np.ndarray, *, threshold: float = 0.5) -> float:
    """Precision of both classes at ``threshold``, averaged with class-support weights."""
    y = np.asarray(y).astype(bool).ravel()
    pred = np.asarray(prob).ravel() >= threshold
    total = 0.0
    for cls in (False, True):
        predicted = pred == cls
        precision = float((y[predicted] == cls).mean()) if predicted.any() else 0.0
        total += precision * float((y == cls).sum())
    return total / y.size if y.size else float("nan")


def evaluate(user: np.ndarray, y: np.ndarray, logit: np.ndarray) -> dict[str, float]:
    """All docs/design.md §5 metrics from logits, as one JSON-ready dict."""
    with np.errstate(over="ignore"):  # a diverged model's huge logits score 0 or 1
        prob = 1.0 / (1.0 + np.exp(-np.asarray(logit, np.float64)))
    return {
        "auc": auc(y, prob),
        "gauc": gauc(user, y, prob),
        "logloss": logloss(y, prob),
        "precision": weighted_precision(y, prob),
        "n": int(np.asarray(y).size),
    }
