"""Seeded synthetic data with group-structured preference drift between open and private users.

Why it exists: tests and the offline quickstart need data where FedPA's premise holds by
construction. Clicks follow a logistic model over user attributes × item categories. Open users
follow the base preferences only; **private** users additionally carry a group-level drift (one
preference shift over item categories per value of each group attribute) plus a smaller per-user
shift. A model pre-trained on open users therefore cannot know the drift, group adapters can learn
it from private users of the same group, and private user adapters can learn the rest.

Private users are chosen with the loader's own rule (:func:`assign_open_users`, same seed and
``SYNTHETIC_DEFAULTS``), so ``load_dataset("synthetic", seed=s)`` calls private exactly the users
that drifted.

Usage: ``interactions, users, items = generate_synthetic(n_users=400, seed=0)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fedpa.data.formats import NUMERIC_PREFIX, RawTables
from fedpa.data.splits import assign_open_users
from fedpa.errors import ConfigError

__all__ = ["SYNTHETIC_DEFAULTS", "generate_synthetic", "synthetic_tables"]

SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "pool_attribute": "activity",
    "pool_values": ("high",),
    "group_attributes": ("age_band", "region"),
}
_AGE_BANDS = ("18-24", "25-34", "35-49", "50+")
_REGIONS = ("north", "south", "east", "west", "central")
_ACTIVITY = ("high", "medium", "low")
_DEVICES = ("android", "ios")
_CATEGORIES = tuple(f"cat{i}" for i in range(8))
_CREATORS = ("pro", "amateur", "brand")
_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
_SPAN_MS = 14 * 24 * 3600 * 1000  # two weeks of activity
_USER_SHIFT = 0.35  # per-user drift, relative to the group drift: adapters per user learn less


def generate_synthetic(
    *,
    n_users: int = 400,
    n_items: int = 300,
    interactions_per_user: int = 40,
    seed: int = 0,
    drift: float = 1.5,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Interactions, users and items tables in the generic layout (docs/data-format.md).

    ``drift`` is the standard deviation (in logits) of each group attribute's per-value preference
    shift over item categories for private users; 0 makes both populations identical. Each user
    gets between half and 1.5× ``interactions_per_user`` impressions (mean as given).
    """
    if n_users < 1 or n_items < 1 or interactions_per_user < 1:
        raise ConfigError(f"synthetic: n_users, n_items and interactions_per_user must be ≥ 1, got "
                          f"{n_users}, {n_items}, {interactions_per_user}")
    if drift < 0:
        raise ConfigError(f"synthetic: drift must be ≥ 0, got {drift}")
    rng = np.random.default_rng(seed)
    n_cat = len(_CATEGORIES)

    # Users: two group attributes, the pool attribute and one more plain feature.
    age = rng.choice(len(_AGE_BANDS), size=n_users, p=[0.25, 0.35, 0.25, 0.15])
    region = rng.choice(len(_REGIONS), size=n_users)
    activity = rng.choice(len(_ACTIVITY), size=n_users, p=[0.5, 0.3, 0.2])
    device = rng.choice(len(_DEVICES), size=n_users, p=[0.7, 0.3])
    user_ids = np.array([f"u{k:05d}" for k in range(n_users)], dtype=object)
    users = pd.DataFrame({
        "user_id": user_ids,
        "age_band": np.array(_AGE_BANDS, dtype=object)[age],
        "region": np.array(_REGIONS, dtype=object)[region],
        "activity": np.array(_ACTIVITY, dtype=object)[activity],
        "device": np.array(_DEVICES, dtype=object)[device],
    })

    # Items: category, creator type, duration (numeric, category-dependent), latent popularity.
    category = rng.integers(0, n_cat, size=n_items)
    creator = rng.choice(len(_CREATORS), size=n_items, p=[0.3, 0.5, 0.2])
    duration = np.round(np.exp(rng.normal(9.5 + 0.15 * category, 0.6))).astype(np.int64)  # ms-ish
    popularity = rng.normal(0.0, 0.5, size=n_items)
    items = pd.DataFrame({
        "item_id": np.array([f"i{k:05d}" for k in range(n_items)], dtype=object),
        "category": np.array(_CATEGORIES, dtype=object)[category],
        "creator_type": np.array(_CREATORS, dtype=object)[creator],
        f"{NUMERIC_PREFIX}duration": duration,
    })

    # Base preferences every user shares, indexed by user attribute × item category.
    w_age = rng.normal(0.0, 1.0, size=(len(_AGE_BANDS), n_cat))
    w_region = rng.normal(0.0, 0.7, size=(len(_REGIONS), n_cat))
    w_device = rng.normal(0.0, 0.4, size=(len(_DEVICES), len(_CREATORS)))
    w_duration = rng.normal(0.0, 0.3, size=len(_AGE_BANDS))  # taste for longer videos by age
    # Private-only drift: one shift over categories per group value, plus a per-user shift.
    d_age = rng.normal(0.0, drift, size=(len(_AGE_BANDS), n_cat))
    d_region = rng.normal(0.0, drift, size=(len(_REGIONS), n_cat))
    d_user = rng.normal(0.0, drift * _USER_SHIFT, size=(n_users, n_cat))
    is_private = ~assign_open_users(users[SYNTHETIC_DEFAULTS["pool_attribute"]].to_numpy(),
                                    SYNTHETIC_DEFAULTS["pool_values"], seed=seed)

    # Impressions: per-user counts, exposure mildly favours popular items, times sorted per user.
    counts = rng.integers(max(1, interactions_per_user // 2), interactions_per_user + interactions_per_user // 2 + 1,
                          size=n_users)
    uu = np.repeat(np.arange(n_users), counts)
    exposure = np.exp(0.5 * popularity)
    ii = rng.choice(n_items, size=uu.size, p=exposure / exposure.sum())
    c = category[ii]
    z_dur = (np.log(duration[ii]) - 10.0) / 0.8
    logit = (-0.3 + popularity[ii] + w_age[age[uu], c] + w_region[region[uu], c]
             + w_device[device[uu], creator[ii]] + w_duration[age[uu]] * z_dur)
    logit = logit + is_private[uu] * (d_age[age[uu], c] + d_region[region[uu], c] + d_user[uu, c])
    label = (rng.random(uu.size) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    ts = _START_MS + rng.integers(0, _SPAN_MS, size=uu.size)
    order = np.lexsort((ts, uu))
    interactions = pd.DataFrame({
        "user_id": user_ids[uu[order]],
        "item_id": items["item_id"].to_numpy()[ii[order]],
        "timestamp": ts[order],
        "label": label[order],
    })
    return interactions, users, items


def synthetic_tables(interactions: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> RawTables:
    """Generic-layout frames (as ``generate_synthetic`` returns them) → RawTables, in memory."""
    inter = pd.DataFrame({
        "user_id": interactions["user_id"].astype(str).to_numpy(dtype=object),
        "item_id": interactions["item_id"].astype(str).to_numpy(dtype=object),
        "timestamp": interactions["timestamp"].to_numpy(dtype=np.int64),
        "label": interactions["label"].to_numpy(dtype=np.float32),
    })
    ucols = tuple(c for c in users.columns if c != "user_id")
    icols = tuple(c for c in items.columns if c != "item_id" and not c.startswith(NUMERIC_PREFIX))
    ncols = tuple(c for c in items.columns if c.startswith(NUMERIC_PREFIX))
    return RawTables(inter, users.copy(), items.copy(), ucols, icols, ncols,
                     defaults=dict(SYNTHETIC_DEFAULTS),
                     report={"duplicate_rows_dropped": 0, "label_column": "label", "generator": "synthetic"})
