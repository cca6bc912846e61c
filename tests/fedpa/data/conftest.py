"""Tiny on-disk datasets in each official format, written fresh into tmp_path for every test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Twelve users: 0–5 have a pool value of search_active_level / user_active_degree, 6–11 do not.
# User 11 carries values nobody else has (onehot_feat1=99, a unique register range), and item 50
# is only ever seen by user 11, so with pool_fraction=1, rest_fraction=0 they are private-only.
N_USERS = 12


def _log_rows(rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    rows = []
    for u in range(N_USERS):
        n = 2 if u == 10 else 5 + u % 4  # user 10 has too few rows and must be dropped
        t0 = 1_685_000_000_000 + u * 1000
        for k in range(n):
            item = 50 if (u == 11 and k == 0) else int(rng.integers(0, 20))
            rows.append((u, item, t0 + int(rng.integers(0, 10**7)), int(rng.integers(0, 2))))
    return rows


@pytest.fixture
def kuaisar_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    d = tmp_path / "kuaisar-r"
    d.mkdir()
    rows = _log_rows(rng)
    pd.DataFrame(rows, columns=["user_id", "video_id", "timestamp", "is_click"]).astype(
        {"timestamp": float}).to_csv(d / "df.csv", index=False)
    pd.DataFrame({
        "user_id": range(N_USERS),
        "onehot_feat1": [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 99],
        "onehot_feat2": [1, 2] * 6,
        "search_active_level": [3, 4, 5, 6, 3, 4, 0, 0, 1, 2, 0, 0],
        "reco_active_level": [0, 1, 2, 3] * 3,
    }).to_csv(d / "user_features.csv", index=False)
    items = sorted({r[1] for r in rows})
    pd.DataFrame({
        "video_id": items,
        "item_type": [0] * len(items),
        "upload_type": [i % 3 for i in items],
        "first_level_category_name": [7777 if i == 50 else i % 5 for i in items],
        "second_level_category_name": [i % 7 for i in items],
        "third_level_category_name": [1] * len(items),
        "fourth_level_category_name": [2] * len(items),
    }).to_csv(d / "video_features.csv", index=False)
    return d


def _kuairand_log(rng: np.random.Generator) -> pd.DataFrame:
    rows = _log_rows(rng)
    df = pd.DataFrame(rows, columns=["user_id", "video_id", "time_ms", "is_click"])
    df["date"] = 20220410
    df["hourmin"] = 1700
    df["long_view"] = 1 - df["is_click"]
    df["duration_ms"] = (df["video_id"] + 1) * 1000
    df["label"] = df["is_click"]
    return pd.concat([df, df.iloc[[3, 7]]], ignore_index=True)  # two exact duplicate rows


@pytest.fixture
def kuairand_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    d = tmp_path / "kuairand"
    d.mkdir()
    log = _kuairand_log(rng)
    log.to_csv(d / "log_standard_4_08_to_4_21_pure.csv", index=False)
    degrees = ["full_active"] * 6 + ["high_active", "middle_active"] * 3
    users = pd.DataFrame({
        "user_id": range(N_USERS),
        "user_active_degree": degrees,
        "register_days_range": ["730+", "366-730", "181-365"] * 3 + ["730+", "366-730", "1-30"],
        "follow_user_num_range": ["(250,500]", "500+"] * 6,
        "is_lowactive_period": 0,
        "is_live_streamer": [-124, 1] * 6,
        "is_video_author": 1,
        "fans_user_num_range": "[10,100)",
        "friend_user_num_range": "[5,30)",
    })
    for k in range(18):
        users[f"onehot_feat{k}"] = [float(k % 3), np.nan] * 6 if k >= 12 else [(u + k) % 4 for u in range(N_USERS)]
    users.to_csv(d / "user_features_pure.csv", index=False)
    # Only videos 0–9 have a feature row (like the likehate subset, most videos lack one).
    pd.DataFrame({
        "video_id": range(10),
        "video_type": ["NORMAL"] * 9 + ["AD"],
        "upload_type": ["LongImport", "Kmovie"] * 5,
        "music_type": [9.0, np.nan] * 5,
        "tag": ["39", "39,68"] * 5,
        "video_duration": [1000.0 * (i + 1) for i in range(10)],
    }).to_csv(d / "video_features_basic_pure.csv", index=False)
    return d


@pytest.fixture
def kuairand_tsv_dir(kuairand_dir: Path) -> Path:
    """The same data as the tab-separated likehate subset layout."""
    src = kuairand_dir / "log_standard_4_08_to_4_21_pure.csv"
    pd.read_csv(src).to_csv(kuairand_dir / "log_standard_likehate_kcore15.tsv", sep="\t", index=False)
    src.unlink()
    return kuairand_dir
