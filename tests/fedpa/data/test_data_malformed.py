"""Malformed inputs fail with a DataError naming the file, the column and the row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fedpa.data import generate_synthetic, load_dataset, write_generic_csv
from fedpa.errors import DataError

OPTS = {"pool_attribute": "activity", "pool_values": ["high"], "group_attributes": ["region"]}


@pytest.fixture
def generic_dir(tmp_path: Path) -> Path:
    write_generic_csv(tmp_path, *generate_synthetic(n_users=20, n_items=15, interactions_per_user=8))
    return tmp_path


def _edit(path: Path, column: str, row: int, value: object) -> None:
    df = pd.read_csv(path, dtype=str)
    df.loc[row, column] = value
    df.to_csv(path, index=False)


def test_non_integer_label_names_file_column_row(generic_dir: Path) -> None:
    _edit(generic_dir / "interactions.csv", "label", 16, "x")
    with pytest.raises(DataError) as err:
        load_dataset("csv", generic_dir, **OPTS)
    msg = str(err.value)
    assert "interactions.csv" in msg and "'label'" in msg and "row 17" in msg and "'x'" in msg


def test_label_outside_0_1_is_refused(generic_dir: Path) -> None:
    _edit(generic_dir / "interactions.csv", "label", 3, "2")
    with pytest.raises(DataError, match=r"interactions.csv: column 'label', row 4 .*0/1"):
        load_dataset("csv", generic_dir, **OPTS)


def test_blank_timestamp_is_a_missing_value(generic_dir: Path) -> None:
    _edit(generic_dir / "interactions.csv", "timestamp", 0, None)
    with pytest.raises(DataError, match=r"column 'timestamp', row 1 \(line 2\): missing value"):
        load_dataset("csv", generic_dir, **OPTS)


def test_blank_id_is_refused(generic_dir: Path) -> None:
    _edit(generic_dir / "interactions.csv", "item_id", 5, None)
    with pytest.raises(DataError, match=r"column 'item_id', row 6 .*missing id"):
        load_dataset("csv", generic_dir, **OPTS)


def test_missing_required_column(generic_dir: Path) -> None:
    path = generic_dir / "interactions.csv"
    pd.read_csv(path).drop(columns=["timestamp"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"interactions.csv: missing required column 'timestamp'"):
        load_dataset("csv", generic_dir, **OPTS)


@pytest.mark.parametrize("name", ["interactions.csv", "users.csv", "items.csv"])
def test_missing_file(generic_dir: Path, name: str) -> None:
    (generic_dir / name).unlink()
    with pytest.raises(DataError, match=rf"{name}: file not found"):
        load_dataset("csv", generic_dir, **OPTS)


def test_duplicate_feature_row(generic_dir: Path) -> None:
    path = generic_dir / "users.csv"
    df = pd.read_csv(path)
    pd.concat([df, df.iloc[[2]]]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"users.csv: column 'user_id', row 21 .*duplicate id"):
        load_dataset("csv", generic_dir, **OPTS)


def test_non_numeric_num_column(generic_dir: Path) -> None:
    _edit(generic_dir / "items.csv", "num_duration", 4, "long")
    with pytest.raises(DataError, match=r"items.csv: column 'num_duration', row 5 .*'long'"):
        load_dataset("csv", generic_dir, **OPTS)


def test_ragged_line_is_reported_with_file(generic_dir: Path) -> None:
    with (generic_dir / "interactions.csv").open("a") as fh:
        fh.write("u1,i1,5,1,extra,fields\n")
    with pytest.raises(DataError, match=r"interactions\.csv: malformed file"):
        load_dataset("csv", generic_dir, **OPTS)


def test_kuaisar_missing_video_features(kuaisar_dir: Path) -> None:
    (kuaisar_dir / "video_features.csv").unlink()
    with pytest.raises(DataError, match=r"video_features\.csv: file not found"):
        load_dataset("kuaisar-r", kuaisar_dir)


def test_kuairand_bad_time_ms(kuairand_dir: Path) -> None:
    _edit(kuairand_dir / "log_standard_4_08_to_4_21_pure.csv", "time_ms", 9, "noon")
    with pytest.raises(DataError, match=r"log_standard_4_08_to_4_21_pure.csv: column 'time_ms', row 10"):
        load_dataset("kuairand", kuairand_dir)


def test_invalid_dataset_json(generic_dir: Path) -> None:
    (generic_dir / "dataset.json").write_text('{"pool_atribute": "activity"}')
    with pytest.raises(DataError, match=r"dataset\.json: unknown key 'pool_atribute'"):
        load_dataset("csv", generic_dir)
