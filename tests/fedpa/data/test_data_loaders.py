"""Loaders on tiny files in each official format and in the generic CSV layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedpa.data import (
    SYNTHETIC_DEFAULTS,
    dataset_stats,
    generate_synthetic,
    load_dataset,
    write_generic_csv,
)
from fedpa.errors import ConfigError, DataError

EVERYONE_BY_POOL = {"pool_fraction": 1.0, "rest_fraction": 0.0}  # deterministic open = pool


def _all_rows(ds):
    return sum(len(ds.split(s)) for s in ("open_train", "open_val", "open_test",
                                           "private_train", "private_val", "private_test"))


def test_kuaisar_loader_reads_official_files(kuaisar_dir: Path) -> None:
    ds = load_dataset("kuaisar-r", kuaisar_dir, **EVERYONE_BY_POOL)
    log = pd.read_csv(kuaisar_dir / "df.csv")
    assert ds.report["interactions"] == len(log)
    assert ds.user_ids.tolist() == [str(u) for u in range(12)]  # numeric order, ids as strings
    assert ds.schema.names[:4] == ("onehot_feat1", "onehot_feat2", "search_active_level", "reco_active_level")
    assert ds.schema.group_attributes == ("onehot_feat2", "reco_active_level")
    assert sorted(ds.open_users.tolist()) == [0, 1, 2, 3, 4, 5]
    assert ds.private_users.tolist() == [6, 7, 8, 9, 11]  # user 10 has 2 rows: dropped
    assert ds.report["private_users_dropped_too_few"] == 1
    assert _all_rows(ds) == len(log) - 2
    assert ds.user_groups.tolist() == ds.user_x[:, list(ds.schema.group_positions)].tolist()
    x = ds.private_train.x
    assert x.dtype == np.int64 and x.shape[1] == len(ds.schema.features)
    assert (x < np.array(ds.schema.cardinalities)).all() and (x >= 0).all()


def test_private_only_categories_encode_to_oov(kuaisar_dir: Path) -> None:
    ds = load_dataset("kuaisar-r", kuaisar_dir, **EVERYONE_BY_POOL)
    feat1 = ds.schema.features[0]
    assert "99" not in feat1.vocabulary  # user 11 (private) is the only one with onehot_feat1=99
    assert ds.user_x[11, 0] == 0
    cat = ds.schema.names.index("first_level_category_name")
    item50 = ds.item_ids.tolist().index("50")
    private = [ds.split(s) for s in ("private_train", "private_val", "private_test")]
    codes = np.concatenate([p.x[p.item == item50, cat] for p in private])
    assert codes.size == 1 and codes[0] == 0
    assert "7777" not in ds.schema.features[cat].vocabulary


def test_kuaisar_feature_dict_selects_features(kuaisar_dir: Path) -> None:
    (kuaisar_dir / "KuaiSAR-R_video_feature_dict.txt").write_text("item_type\nupload_type\n")
    ds = load_dataset("kuaisar-r", kuaisar_dir)
    assert [f.name for f in ds.schema.features if f.source == "item"] == ["item_type", "upload_type"]


def test_kuairand_csv_loader(kuairand_dir: Path) -> None:
    ds = load_dataset("kuairand", kuairand_dir, **EVERYONE_BY_POOL)
    assert ds.report["duplicate_rows_dropped"] == 2
    assert ds.report["label_column"] == "is_click"
    assert sorted(ds.open_users.tolist()) == [0, 1, 2, 3, 4, 5]
    item_names = [f.name for f in ds.schema.features if f.source == "item"]
    assert item_names == ["video_type", "upload_type", "music_type", "tag", "duration_ms"]
    dur = ds.schema.features[ds.schema.names.index("duration_ms")]
    assert dur.bucket_edges is not None
    # Videos ≥ 10 have no feature row: categorical codes are OOV, duration still encoded from the log.
    vt = ds.schema.names.index("video_type")
    no_row = np.array([int(v) >= 10 for v in ds.item_ids])[ds.open_train.item]
    assert (ds.open_train.x[no_row, vt] == 0).all()
    assert (ds.open_train.x[~no_row, vt] > 0).all()
    assert (ds.open_train.x[:, ds.schema.names.index("duration_ms")] > 0).all()
    assert ds.report["items_without_feature_row"] == int(np.sum([int(v) >= 10 for v in ds.item_ids]))


def test_kuairand_tsv_subset_and_label_option(kuairand_tsv_dir: Path) -> None:
    ds = load_dataset("kuairand", kuairand_tsv_dir, label="long_view", **EVERYONE_BY_POOL)
    assert ds.report["log_files"] == ["log_standard_likehate_kcore15.tsv"]
    assert ds.report["duplicate_rows_dropped"] == 2
    assert ds.report["label_column"] == "long_view"
    by_click = load_dataset("kuairand", kuairand_tsv_dir, **EVERYONE_BY_POOL)
    np.testing.assert_array_equal(ds.private_test.y, 1 - by_click.private_test.y)  # long_view = 1 - is_click


def test_generic_csv_round_trip_matches_in_memory_synthetic(tmp_path: Path) -> None:
    frames = generate_synthetic(n_users=60, n_items=40, interactions_per_user=12, seed=5)
    write_generic_csv(tmp_path, *frames, meta=SYNTHETIC_DEFAULTS)
    from_csv = load_dataset("csv", tmp_path, seed=5)
    in_mem = load_dataset("synthetic", seed=5, n_users=60, n_items=40, interactions_per_user=12)
    assert from_csv.schema == in_mem.schema
    for name in ("open_train", "private_test"):
        a, b = from_csv.split(name), in_mem.split(name)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.ts, b.ts)
    assert dataset_stats(from_csv) == dataset_stats(in_mem)
    numeric = from_csv.schema.features[from_csv.schema.names.index("num_duration")]
    assert numeric.bucket_edges  # the num_ prefix declares a bucketised numeric column


def test_csv_without_pool_attribute_needs_option_or_time_split(tmp_path: Path) -> None:
    write_generic_csv(tmp_path, *generate_synthetic(n_users=30, n_items=20, interactions_per_user=8))
    with pytest.raises(ConfigError, match="pool_attribute"):
        load_dataset("csv", tmp_path)
    ds = load_dataset("csv", tmp_path, pool_attribute="device", pool_values=["ios"],
                      group_attributes=["region"])
    assert ds.schema.group_attributes == ("region",)
    assert len(load_dataset("csv", tmp_path, split="time").private_train) > 0


def test_item_id_hash_feature(kuaisar_dir: Path) -> None:
    ds = load_dataset("kuaisar-r", kuaisar_dir, item_id_buckets=16, features="base")
    f = ds.schema.features[-1]
    assert (f.name, f.side, f.cardinality) == ("item_id_hash", "item", 17)
    np.testing.assert_array_equal(ds.open_train.x[:, -1], f.encode(ds.item_ids[ds.open_train.item]))


def test_unknown_dataset_and_option_are_refused(kuaisar_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("movielens", kuaisar_dir)
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        load_dataset("kuaisar-r", kuaisar_dir, colour="red")
    with pytest.raises(DataError, match=r"user_features\.csv: missing required column 'shoe_size'"):
        load_dataset("kuaisar-r", kuaisar_dir, group_attributes=["shoe_size"])


def test_data_dir_from_environment_and_parent_folder(kuaisar_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("FEDPA_DATA_DIR", str(kuaisar_dir.parent))
    ds = load_dataset("kuaisar-r")  # finds the kuaisar-r/ sub-folder of $FEDPA_DATA_DIR
    assert ds.report["interactions"] == len(pd.read_csv(kuaisar_dir / "df.csv"))
    monkeypatch.delenv("FEDPA_DATA_DIR")
    with pytest.raises(DataError, match="FEDPA_DATA_DIR"):
        load_dataset("kuaisar-r")
