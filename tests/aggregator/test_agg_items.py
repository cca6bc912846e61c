"""Item tables: publish (versioned, refreshable), per-candidate lookups with an OOV marker, and the
edge client's batching and version-keyed cache against the real app."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from agg_helpers import ADMIN, ADMIN_TOKEN, MODEL_ID, aggregator_process, make_update, publish, register, write_bundle

from aggregator.core.config import Settings
from aggregator.services.items import MAX_LOOKUP_BATCH
from fedpa.data.schema import CategoricalFeature, FeatureSchema
from fedpa.manifest import ItemVectorSpec
from fedpa.runtime.items import (
    ItemColumn,
    ItemRows,
    ItemTableFile,
    ItemTableMeta,
    expected_columns,
    quantise_vectors,
    vectors_digest,
)

SCHEMA = FeatureSchema(
    features=(
        CategoricalFeature("age", "user", vocabulary=("1", "2")),
        CategoricalFeature("region", "user", vocabulary=("n",)),
        CategoricalFeature("category", "item", vocabulary=("a", "b")),
        CategoricalFeature("item_code", "item", source="item_table", n_codes=6),
        CategoricalFeature("item_ctr", "item", source="item_table", bucket_edges=(0.1, 0.2),
                           bucket_transform="identity", signal="ctr"),
        CategoricalFeature("item_ctr_age", "item", source="item_table", bucket_edges=(0.1,),
                           bucket_transform="identity", signal="group_ctr", of="age"),
    ),
    group_attributes=("age", "region"),
)
IDS = ["v1", "v2", "10", "v4"]


def item_table(table_version: int = 1, *, model_version: int = 1, seed: int = 0,
               columns: tuple[ItemColumn, ...] | None = None) -> ItemTableFile:
    rng = np.random.default_rng(seed)
    columns = columns or expected_columns(SCHEMA)
    meta = ItemTableMeta(model_id=MODEL_ID, model_version=model_version, table_version=table_version,
                         columns=columns)
    codes = np.stack([rng.integers(0, 3 if c.feature == "item_ctr_age" else 4, len(IDS)) for c in columns], 1)
    return ItemTableFile.from_arrays(meta, IDS, np.arange(1, len(IDS) + 1), codes)


def publish_model(client, root: Path, *, model_version: int = 1, item_vectors: ItemVectorSpec | None = None) -> None:
    write_bundle(root, model_version=model_version)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["feature_schema"] = SCHEMA.to_dict()
    if item_vectors is not None:  # programs that take the item code's vector from the item table
        manifest["item_vectors"] = item_vectors.model_dump()
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert publish(client, root).status_code == 201


def post_table(client, table: ItemTableFile):
    return client.post(f"/v1/models/{MODEL_ID}/items", content=table.encode(), headers=ADMIN)


def test_publish_lookup_refresh(app_client, tmp_path: Path) -> None:
    client = app_client()
    publish_model(client, tmp_path / "b")
    device = register(client)
    before = client.get(f"/v1/models/{MODEL_ID}/items", headers=device)
    first, second = item_table(1), item_table(2, seed=1)

    published = post_table(client, first)
    r1 = client.post(f"/v1/models/{MODEL_ID}/items/lookup", json={"item_ids": ["v2", "nope", 10]}, headers=device)
    status = client.get(f"/v1/models/{MODEL_ID}/items", headers=device).json()
    refreshed = post_table(client, second)
    again = post_table(client, second)
    r2 = client.post(f"/v1/models/{MODEL_ID}/items/lookup", json={"item_ids": ["v2"]}, headers=device)

    assert before.status_code == 404 and before.json()["error"] == "no_item_table"
    assert published.status_code == 201, published.text
    assert published.json()["table_version"] == 1 and published.json()["n_items"] == len(IDS)
    rows = ItemRows.decode(r1.content)
    assert r1.headers["X-FedPA-Table-Version"] == "1" and r1.headers["X-FedPA-Model-Version"] == "1"
    assert rows.known.tolist() == [True, False, True]
    assert rows.item_code.tolist() == [2, 0, 3]
    np.testing.assert_array_equal(rows.codes[0], first.codes[1])
    np.testing.assert_array_equal(rows.codes[1], 0)  # OOV codes for the unknown item
    np.testing.assert_array_equal(rows.codes[2], first.codes[2])  # integer 10 == "10"
    assert status["table_version"] == 1 and status["max_lookup_batch"] == MAX_LOOKUP_BATCH
    assert len(status["columns"]) == 1 + 3  # item_ctr, item_ctr_age for age codes 0, 1, 2
    assert refreshed.status_code == 201
    assert again.status_code == 409 and again.json()["error"] == "table_version_not_newer"
    assert r2.headers["X-FedPA-Table-Version"] == "2"
    np.testing.assert_array_equal(ItemRows.decode(r2.content).codes[0], second.codes[1])


def test_refusals(app_client, tmp_path: Path) -> None:
    client = app_client()
    publish_model(client, tmp_path / "b")
    device = register(client)
    post_table(client, item_table(1))
    bad_columns = item_table(2, columns=(ItemColumn(feature="item_ctr"),))

    wrong_version = post_table(client, item_table(2, model_version=2))
    wrong_columns = post_table(client, bad_columns)
    garbage = client.post(f"/v1/models/{MODEL_ID}/items", content=b"not safetensors at all", headers=ADMIN)
    by_device = client.post(f"/v1/models/{MODEL_ID}/items", content=item_table(3).encode(), headers=device)
    too_many = client.post(f"/v1/models/{MODEL_ID}/items/lookup",
                           json={"item_ids": [f"i{k}" for k in range(MAX_LOOKUP_BATCH + 1)]}, headers=device)
    empty = client.post(f"/v1/models/{MODEL_ID}/items/lookup", json={"item_ids": []}, headers=device)
    unchanged = client.get(f"/v1/models/{MODEL_ID}/items", headers=device).json()

    assert wrong_version.status_code == 409 and wrong_version.json()["error"] == "model_version_mismatch"
    assert wrong_columns.status_code == 422 and "do not match" in wrong_columns.json()["detail"]
    assert garbage.status_code == 422 and garbage.json()["error"] == "invalid_payload"
    assert by_device.status_code == 403
    assert too_many.status_code == 413 and too_many.json()["error"] == "lookup_batch_too_large"
    assert str(MAX_LOOKUP_BATCH) in too_many.json()["detail"]
    assert empty.status_code == 422
    assert unchanged["table_version"] == 1  # no refusal changed what is served


def test_new_model_version_needs_its_own_table(app_client, tmp_path: Path) -> None:
    client = app_client()
    publish_model(client, tmp_path / "b")
    post_table(client, item_table(1))
    publish_model(client, tmp_path / "b2", model_version=2)
    device = register(client)

    stale = client.post(f"/v1/models/{MODEL_ID}/items/lookup", json={"item_ids": ["v1"]}, headers=device)
    fresh = post_table(client, item_table(1, model_version=2))

    assert stale.status_code == 404 and stale.json()["error"] == "no_item_table"
    assert fresh.status_code == 201


ITEM_CODES = 6  # SCHEMA's item_code cardinality: the student's item-code rows, OOV code 0 included
VECTOR_IDS = ["v1", "v2", "10", "v4", "v5"]  # item codes 1..5: with the OOV row every code is in the table


def student_rows(dim: int = 4, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A student's quantised item-code rows (int8 [ITEM_CODES, dim], float32 scale)."""
    return quantise_vectors(np.random.default_rng(seed).normal(size=(ITEM_CODES, dim)).astype(np.float32))


def vectors_spec(rows: tuple[np.ndarray, np.ndarray]) -> ItemVectorSpec:
    """The manifest's item_vectors of a bundle built from the student with ``rows``."""
    column = SCHEMA.names.index("item_code")
    return ItemVectorSpec(feature="item_code", column=column, rows=ITEM_CODES, dim=rows[0].shape[1],
                          sha256=vectors_digest(*rows))


def vector_table(rows: tuple[np.ndarray, np.ndarray] | None, table_version: int = 1, *,
                 item_code: list[int] | None = None) -> ItemTableFile:
    """A format-2 table whose items carry the vectors of ``rows`` (None: a table without vectors)."""
    meta = ItemTableMeta(model_id=MODEL_ID, model_version=1, table_version=table_version,
                         columns=expected_columns(SCHEMA))
    codes = np.zeros((len(VECTOR_IDS), len(meta.columns)), np.int64)
    return ItemTableFile.from_arrays(meta, VECTOR_IDS, np.array(item_code or [1, 2, 3, 4, 5]), codes,
                                     code_vectors=rows)


def test_a_table_whose_vectors_are_not_the_models_is_refused(app_client, tmp_path: Path) -> None:
    client = app_client()
    ours = student_rows(4)
    publish_model(client, tmp_path / "b", item_vectors=vectors_spec(ours))
    device = register(client)
    good = vector_table(ours)
    theirs = vector_table(student_rows(4, seed=1))  # another student, same dimension
    # the right digest in the metadata over another student's rows
    relabelled = ItemTableFile(good.meta, good.ids, good.item_code, good.codes, good.default_codes,
                               theirs.vector, theirs.vector_scale, theirs.default_vector, theirs.default_vector_scale)
    twice = vector_table(ours, item_code=[1, 2, 3, 4, 4])
    twice_vectors = twice.vector.copy()
    twice_vectors[4] = ours[0][5]  # code 4's second row carries code 5's vector
    two_vectors = ItemTableFile(twice.meta, twice.ids, twice.item_code, twice.codes, twice.default_codes,
                                twice_vectors, twice.vector_scale, twice.default_vector, twice.default_vector_scale)

    refused = {name: post_table(client, table) for name, table in {
        "dim": vector_table(student_rows(3)), "digest": theirs, "none": vector_table(None),
        "relabelled": relabelled, "two vectors": two_vectors}.items()}
    before = client.get(f"/v1/models/{MODEL_ID}/items", headers=device)
    published = post_table(client, good)  # table_version 1: no refusal took it
    rows = ItemRows.decode(client.post(f"/v1/models/{MODEL_ID}/items/lookup", json={"item_ids": ["v4", "nope"]},
                                       headers=device).content)

    for name, r in refused.items():
        assert r.status_code == 422, (name, r.text)
        assert r.json()["error"] == "item_vectors_mismatch", name
    assert "vector_dim 3 does not match the model's item_vectors dim 4" in refused["dim"].json()["detail"]
    assert f"vector_sha256 {theirs.meta.vector_sha256[:12]}" in refused["digest"].json()["detail"]
    assert "carries no item vectors" in refused["none"].json()["detail"]
    assert "--student" in refused["none"].json()["detail"]
    assert f"hash to {theirs.meta.vector_sha256[:12]}" in refused["relabelled"].json()["detail"]
    assert "item code 4 has rows with different vectors" in refused["two vectors"].json()["detail"]
    assert all(f"model {MODEL_ID!r} v1" in r.json()["detail"] for r in refused.values())
    assert before.status_code == 404 and before.json()["error"] == "no_item_table"  # nothing was stored
    assert published.status_code == 201, published.text
    np.testing.assert_array_equal(rows.vectors()[0], (ours[0][4] * ours[1][4]).astype(np.float32))
    np.testing.assert_array_equal(rows.vectors()[1], (ours[0][0] * ours[1][0]).astype(np.float32))  # OOV row


def test_vectors_for_a_model_whose_programs_embed_item_codes_are_refused(app_client, tmp_path: Path) -> None:
    client = app_client()
    publish_model(client, tmp_path / "b")  # no manifest item_vectors
    served = post_table(client, item_table(1))

    refused = post_table(client, vector_table(student_rows(4), table_version=2))
    status = client.get(f"/v1/models/{MODEL_ID}/items", headers=ADMIN).json()

    assert refused.status_code == 422 and refused.json()["error"] == "item_vectors_mismatch"
    assert "carries 4-dimensional item vectors" in refused.json()["detail"]
    assert "no item_vectors" in refused.json()["detail"]
    assert served.status_code == 201 and status["table_version"] == 1  # the table served is unchanged


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_edge_client_batches_and_caches_by_version(app_client, tmp_path: Path) -> None:
    from edge.client import AggregatorClient
    from edge.items import ItemTableClient, publish_item_table

    test_client = app_client()
    publish_model(test_client, tmp_path / "b")
    (tmp_path / "t1.safetensors").write_bytes(item_table(1).encode())
    admin = AggregatorClient("http://testserver", token=ADMIN_TOKEN, http=test_client)
    publish_item_table(admin, MODEL_ID, tmp_path / "t1.safetensors")
    device = AggregatorClient("http://testserver", http=test_client)
    device.register(MODEL_ID)
    items = ItemTableClient(device, MODEL_ID, model_version=1, max_batch=2)

    first = items.rows(["v1", "v2", "10", "zzz", "v1"])
    calls_first = items.requests
    cached = items.rows(["v2", "10"])
    calls_cached = items.requests - calls_first
    post_table(test_client, item_table(2, seed=3))
    items.status()  # the device's periodic check: the new version drops the cache
    refreshed = items.rows(["v2"])

    assert calls_first == 2  # 4 distinct ids in batches of 2
    assert first.known.tolist() == [True, True, True, False, True]
    assert first.item_code.tolist() == [1, 2, 3, 0, 1]
    assert calls_cached == 0 and cached.item_code.tolist() == [2, 3]
    assert items.table_version == 2 and refreshed.meta.table_version == 2
    np.testing.assert_array_equal(refreshed.codes[0], item_table(2, seed=3).codes[1])
    columns = refreshed.columns_for(SCHEMA, {"age": 2, "region": 1})
    assert columns["item_code"].tolist() == [2]
    age2 = next(j for j, c in enumerate(expected_columns(SCHEMA)) if c.feature == "item_ctr_age" and c.group_value == 2)
    assert columns["item_ctr_age"].tolist() == [int(refreshed.codes[0, age2])]


def test_a_device_flooding_lookups_gets_429_and_no_other_device_notices(sqlite_url, tmp_path: Path) -> None:
    """Default settings, a real uvicorn server: a hostile device's lookup flood empties only its own
    bucket; another device's lookups and uploads go through meanwhile, and the admin is not limited."""
    defaults = Settings()
    batch = [f"v{i % 5}" for i in range(MAX_LOOKUP_BATCH)]  # the largest lookup a device may send
    env = {"FEDPA_RATE_LIMIT_PER_MINUTE": str(defaults.rate_limit_per_minute)}  # the default upload limit too
    with aggregator_process(sqlite_url, env=env) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        publish_model(http, tmp_path / "b")
        assert post_table(http, item_table(1)).status_code == 201
        hostile, honest = register(http), register(http)
        url = f"/v1/models/{MODEL_ID}/items/lookup"

        answers: list[httpx.Response] = []
        while len(answers) < 20 * defaults.lookup_burst and 429 not in [r.status_code for r in answers[-1:]]:
            answers.append(http.post(url, json={"item_ids": batch}, headers=hostile))  # as fast as it can
        lookups = [http.post(url, json={"item_ids": ["v2", "nope"]}, headers=honest) for _ in range(20)]
        body, _ = make_update({"age": 1, "region": 0}, seed=1)
        upload = http.post(f"/v1/models/{MODEL_ID}/updates", content=body, headers=honest)
        admin = http.post(url, json={"item_ids": ["v2"]}, headers=ADMIN)

    codes = [r.status_code for r in answers]
    assert codes[: defaults.lookup_burst] == [200] * defaults.lookup_burst  # a generous burst first…
    refused = answers[-1]  # …then the bucket refills at its rate only, and the flood outruns it
    assert refused.status_code == 429, codes[-5:]
    assert refused.json()["error"] == "rate_limited" and "item lookups/minute" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert [r.status_code for r in lookups] == [200] * 20
    assert ItemRows.decode(lookups[-1].content).known.tolist() == [True, False]
    assert upload.status_code == 202, upload.text
    assert admin.status_code == 200


def test_the_operator_publishing_another_students_table_gets_the_code(sqlite_url, tmp_path: Path) -> None:
    """A real uvicorn server, the operator's client (edge.items.publish_item_table): the refusal arrives
    as Refused with the exact code, and the stored table is unchanged."""
    from edge.client import AggregatorClient, Refused
    from edge.items import publish_item_table
    from fedpa.wire import ErrorCode

    ours = student_rows(4)
    (tmp_path / "ours.safetensors").write_bytes(vector_table(ours).encode())
    (tmp_path / "theirs.safetensors").write_bytes(vector_table(student_rows(4, seed=1), table_version=2).encode())
    with aggregator_process(sqlite_url) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        publish_model(http, tmp_path / "b", item_vectors=vectors_spec(ours))
        admin = AggregatorClient(server.url, token=ADMIN_TOKEN)
        served = publish_item_table(admin, MODEL_ID, tmp_path / "ours.safetensors")
        with pytest.raises(Refused) as refused:
            publish_item_table(admin, MODEL_ID, tmp_path / "theirs.safetensors")
        status = admin.request("GET", f"/v1/models/{MODEL_ID}/items").json()
        admin.close()

    assert served["table_version"] == 1
    assert refused.value.status == 422 and refused.value.code == ErrorCode.ITEM_VECTORS_MISMATCH
    assert "another student's" in refused.value.detail
    assert status["table_version"] == 1 and status["sha256"] == served["sha256"]
