"""Encoders: canonical values, OOV code 0, buckets, stable hashing, manifest round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fedpa.data import CategoricalFeature, FeatureSchema
from fedpa.data.schema import canonical_strings, fit_bucket_edges, fit_vocabulary, stable_hash_codes
from fedpa.errors import DataError
from tests.schemas import small_schema


def _schema() -> FeatureSchema:
    return small_schema(group_attributes=("level", "age"))


def test_canonical_strings_unify_int_float_and_text() -> None:
    out = canonical_strings([3, 3.0, "3", " 3 ", None, float("nan"), "", 2.5, True, "007"])
    assert list(out) == ["3", "3", "3", "3", None, None, None, "2.5", "1", "007"]
    assert list(canonical_strings(pd.Series([1.0, np.nan, 4.0]))) == ["1", None, "4"]


def test_vocabulary_encode_maps_unseen_and_missing_to_zero() -> None:
    f = CategoricalFeature("level", "user", fit_vocabulary([10, 3, 1, 3]))
    assert f.vocabulary == ("1", "3", "10")  # numeric order, not "1" < "10" < "3"
    codes = f.encode([1, 3.0, "10", 7, None, np.nan])
    assert codes.dtype == np.int64
    assert codes.tolist() == [1, 2, 3, 0, 0, 0]
    assert f.cardinality == 4


def test_min_count_drops_rare_values() -> None:
    assert fit_vocabulary(["a", "a", "b"], min_count=2) == ("a",)


def test_bucketised_feature_uses_log1p_and_edges() -> None:
    edges = fit_bucket_edges(np.arange(1000), n_buckets=4)
    assert len(edges) == 3
    f = CategoricalFeature("duration", "item", bucket_edges=edges)
    codes = f.encode([0, 1000, 10**9, np.nan, -5])
    assert codes.tolist()[:3] == [1, 4, 4]
    assert codes[3] == 0  # missing
    assert codes[4] == 1  # negatives clip to 0 before log1p
    assert f.cardinality == len(edges) + 2
    assert np.all((f.encode(np.arange(1000)) >= 1) & (f.encode(np.arange(1000)) <= 4))


def test_hash_is_stable_across_processes() -> None:
    here = stable_hash_codes(["v1", "v2", 42], 1000).tolist()
    code = "from fedpa.data.schema import stable_hash_codes as h; print(h(['v1','v2',42], 1000).tolist())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert str(here) == other
    assert all(1 <= c <= 1000 for c in here)
    assert stable_hash_codes([None], 10).tolist() == [0]


def test_schema_round_trips_through_json_exactly() -> None:
    schema = _schema()
    again = FeatureSchema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema
    assert again.cardinalities == (3, 4, 3, 5, 65)


def test_schema_positions_and_table_encoding() -> None:
    schema = _schema()
    assert schema.user_feature_positions == (0, 1)
    assert schema.item_feature_positions == (2, 3, 4)
    assert schema.group_positions == (1, 0)
    users = pd.DataFrame({"user_id": ["u1", "u2"], "level": [10, 99], "age": ["25-34", None]})
    assert schema.encode_users(users).tolist() == [[2, 3], [0, 0]]
    items = pd.DataFrame({"item_id": ["x", "y"], "category": ["b", "zzz"], "duration": [1.0, np.nan]})
    enc = schema.encode_items(items)
    assert enc[:, :2].tolist() == [[2, 2], [0, 0]]
    assert enc[:, 2].tolist() == stable_hash_codes(["x", "y"], 64).tolist()


def test_schema_refuses_bad_layouts() -> None:
    u = CategoricalFeature("a", "user", ("x",))
    i = CategoricalFeature("b", "item", ("y",))
    with pytest.raises(DataError, match="before item"):
        FeatureSchema((i, u))
    with pytest.raises(DataError, match="not a user feature"):
        FeatureSchema((u, i), group_attributes=("b",))
    with pytest.raises(DataError, match="missing column 'a'"):
        FeatureSchema((u, i)).encode_users(pd.DataFrame({"user_id": [1]}))
