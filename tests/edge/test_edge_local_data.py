"""A device's own files are encoded by the bundle's one encoder, with its one missing-column rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edge.local_data import read_candidates, read_interactions
from fedpa.errors import DataError
from tests.schemas import small_schema

SCHEMA = small_schema()
ROWS = {"age": ["25-34", "18-24", None], "level": [10, 3, 3], "category": ["b", "a", "zzz"],
        "duration": [1.0, 100.0, np.nan], "item_id": ["x", "y", "z"], "label": [1, 0, 1], "timestamp": [3, 1, 2]}


def _csv(tmp_path, columns) -> str:
    path = tmp_path / "me.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


def test_interactions_encode_as_the_dataset_pipeline_does(tmp_path):
    # Execute
    x, y, ts = read_interactions(_csv(tmp_path, ROWS), SCHEMA)
    # Assert: rows in time order; each column is the schema's own encoding (the id hash from item_id)
    table = pd.DataFrame(ROWS).sort_values("timestamp", kind="stable")
    expected = np.concatenate([SCHEMA.encode_users(table), SCHEMA.encode_items(table)], axis=1)
    np.testing.assert_array_equal(x, expected)
    assert y.tolist() == [0.0, 1.0, 1.0] and ts.tolist() == [1, 2, 3]
    assert x[:, 0].tolist() == [1, 0, 2]  # a missing *value* is OOV 0; a missing *column* is refused (below)


@pytest.mark.parametrize(("drop", "add", "match"), [
    ("category", {}, r"missing column 'category'"),
    ("item_id", {}, r"missing column 'item_id_hash' \(or 'item_id'\)"),
    (None, {"colour": ["red"] * 3}, r"unknown column \['colour'\]"),
])
def test_a_missing_or_unknown_column_is_refused_by_name(tmp_path, drop, add, match):
    columns = {**{k: v for k, v in ROWS.items() if k != drop}, **add}
    with pytest.raises(DataError, match=match):
        read_interactions(_csv(tmp_path, columns), SCHEMA)


def test_candidates_need_only_item_columns(tmp_path):
    items = {k: ROWS[k] for k in ("item_id", "category", "duration")}
    user = np.array([2, 3, 0, 0, 0])
    x, ids = read_candidates(_csv(tmp_path, items), SCHEMA, user)
    assert ids == ["x", "y", "z"]
    assert (x[:, :2] == [2, 3]).all()  # the device's own user codes
    np.testing.assert_array_equal(x[:, 2:], SCHEMA.encode_items(pd.DataFrame(items)))
    with pytest.raises(DataError, match="missing column 'duration'"):
        read_candidates(_csv(tmp_path, {k: v for k, v in items.items() if k != "duration"}), SCHEMA, user)
