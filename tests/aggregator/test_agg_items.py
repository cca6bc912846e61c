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
from fedpa.runtime.items import ItemColumn, ItemRows, ItemTableFile, ItemTableMeta, expected_columns

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


def publish_model(client, root: Path, *, model_version: int = 1) -> None:
    write_bundle(root, model_version=model_version)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["feature_schema"] = SCHEMA.to_dict()
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
