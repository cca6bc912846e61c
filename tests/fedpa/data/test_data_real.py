"""Smoke loads of the real datasets in ../shared/data (skipped when the copy is absent)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from fedpa.data import load_dataset

ROOT = Path(os.environ.get("FEDPA_DATA_DIR", Path(__file__).resolve().parents[3].parent / "shared" / "data"))


def _need(sub: str) -> Path:
    path = ROOT / sub
    if not path.is_dir():
        pytest.skip(f"real data not available at {path}")
    return path


def test_kuaisar_r_counts_match_readme() -> None:
    path = _need("kuaisar-r")
    start = time.perf_counter()
    ds = load_dataset("kuaisar-r", path, features="base")  # the reader and split; signals add ~1.5 s
    elapsed = time.perf_counter() - start
    assert ds.report["interactions"] == 117_590
    assert ds.n_users == 1_791 and ds.n_items == 69_704
    assert ds.report["duplicate_rows_dropped"] == 0
    assert len(ds.open_users) + len(ds.private_users) == 1_791  # every user has ≥ 10 rows: none dropped
    total = sum(len(ds.split(s)) for s in ("open_train", "open_val", "open_test",
                                           "private_train", "private_val", "private_test"))
    assert total == 117_590
    y = np.concatenate([ds.split(s).y for s in ("open_train", "private_train", "open_test", "private_test",
                                                 "open_val", "private_val")])
    assert abs(y.mean() - 0.514) < 0.001
    assert elapsed < 5.0


def test_kuairand_subset_counts_match_readme() -> None:
    path = _need("kuairand-pure")
    ds = load_dataset("kuairand", path)
    assert ds.report["duplicate_rows_dropped"] == 116
    assert ds.report["interactions"] == 41_828 - 116
    assert ds.n_users == 664 and ds.n_items == 9_359
    assert ds.report["items_without_feature_row"] > 0.9 * ds.n_items  # most videos lack features
