"""A model an older server stored (manifest format 2), after an upgrade: a clear 409 on its endpoints,
its round waits for a re-publish, and every other model keeps working."""

from __future__ import annotations

import json

import sqlalchemy as sa
from agg_helpers import ADMIN, MODEL_ID, make_update, publish, register, write_bundle

from fedpa.payload import decode_tensors
from fedpa.wire import ErrorCode


def _store_as_format_2(db_url: str, model_id: str) -> None:
    """What the database of a server released before manifest format 3 holds for ``model_id``."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        text = conn.execute(sa.text("SELECT manifest_json FROM models WHERE model_id = :m"),
                            {"m": model_id}).scalar_one()
        conn.execute(sa.text("UPDATE models SET manifest_json = :j WHERE model_id = :m"),
                     {"j": json.dumps({**json.loads(text), "format_version": 2}), "m": model_id})
    engine.dispose()


def test_a_model_stored_in_an_old_manifest_format_is_refused_clearly(app_client, db_url, tmp_path):
    client = app_client()
    write_bundle(tmp_path / "old")
    write_bundle(tmp_path / "other", model_id="other-model")
    assert publish(client, tmp_path / "old").status_code == 201
    assert publish(client, tmp_path / "other").status_code == 201
    device = register(client)
    update, _ = make_update({"age": 1, "region": 0}, seed=1)
    assert client.post(f"/v1/models/{MODEL_ID}/updates", content=update, headers=device).status_code == 202
    _store_as_format_2(db_url, MODEL_ID)

    upgraded = app_client()  # a new worker: nothing parsed or cached yet
    # a device identity belongs to the model id and survives the re-publish: registering still works
    late = register(upgraded)
    for response in (upgraded.get(f"/v1/models/{MODEL_ID}/state", headers=late),
                     upgraded.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN),
                     upgraded.post(f"/v1/models/{MODEL_ID}/updates", content=update, headers=device)):
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["error"] == ErrorCode.MODEL_FORMAT_OUTDATED
        assert "format_version 2" in body["detail"] and "publish the model again" in body["detail"]
    # the scheduler skips it (its pending update waits) and the other model is unaffected
    assert upgraded.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).status_code == 409
    other = register(upgraded, "other-model")
    body, _ = make_update({"age": 0, "region": 1}, seed=2, model_id="other-model")
    assert upgraded.post("/v1/models/other-model/updates", content=body, headers=other).status_code == 202
    assert upgraded.post("/v1/models/other-model/aggregate", headers=ADMIN).json()["state_version"] == 1
    assert decode_tensors(upgraded.get("/v1/models/other-model/state", headers=ADMIN).content)

    # publishing a new version (this server's format) brings the model back
    bank = write_bundle(tmp_path / "new", model_version=2, seed=3)
    assert publish(upgraded, tmp_path / "new").status_code == 201
    again = upgraded.get(f"/v1/models/{MODEL_ID}/state", headers=ADMIN)
    assert again.status_code == 200 and set(decode_tensors(again.content)) == set(bank)
