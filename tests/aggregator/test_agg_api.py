"""Every endpoint through FastAPI's TestClient, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import numpy as np
from agg_helpers import (
    ADMIN,
    DRAWN,
    MODEL_ID,
    SPEC,
    make_update,
    publish,
    reference_step,
    register,
    sha256,
    wait_for,
    write_bundle,
)

from fedpa.payload import decode_tensors, encode_tensors


def test_health_metrics_and_openapi(app_client):
    client = app_client()

    health = client.get("/healthz")
    metrics = client.get("/metrics")
    paths = client.get("/openapi.json").json()["paths"]

    assert health.status_code == 200 and health.json() == {"status": "ok", "database": "ok"}
    assert metrics.status_code == 200 and "fedpa_uploads_accepted" in metrics.text
    assert {"/healthz", "/metrics", "/v1/devices", "/v1/models", "/v1/models/{model_id}",
            "/v1/models/{model_id}/files/{name}", "/v1/models/{model_id}/state",
            "/v1/models/{model_id}/updates", "/v1/models/{model_id}/status",
            "/v1/models/{model_id}/aggregate"} <= set(paths)
    assert "application/octet-stream" in paths["/v1/models/{model_id}/updates"]["post"]["requestBody"]["content"]


def test_publish_then_download_manifest_and_files(app_client, bundle):
    client = app_client()
    root, _ = bundle

    created = publish(client, root, {"round_size": 5, "mode": "sync"})
    device = register(client)
    manifest = client.get(f"/v1/models/{MODEL_ID}", headers=device)
    program = client.get(f"/v1/models/{MODEL_ID}/files/inference.onnx", headers=device)
    cached = client.get(f"/v1/models/{MODEL_ID}/files/inference.onnx",
                        headers={**device, "If-None-Match": program.headers["etag"]})
    missing = client.get(f"/v1/models/{MODEL_ID}/files/nope.bin", headers=device)
    again = publish(client, root)

    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["model_id"], body["model_version"], body["state_version"]) == (MODEL_ID, 1, 0)
    assert body["config"]["round_size"] == 5
    assert manifest.content == (root / "manifest.json").read_bytes()
    assert manifest.headers["x-fedpa-model-version"] == "1"
    assert program.content == (root / "inference.onnx").read_bytes()
    assert program.headers["etag"].strip('"') == json.loads(manifest.content)["files"]["inference.onnx"]["sha256"]
    assert cached.status_code == 304
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_file"
    assert again.status_code == 409 and again.json()["error"] == "model_version_not_newer"


def test_state_download_for_groups_and_whole_bank(app_client, bundle):
    client = app_client()
    root, bank = bundle
    publish(client, root)
    device = register(client)

    mine = client.get(f"/v1/models/{MODEL_ID}/state", params={"groups": "age:2,region:0"}, headers=device)
    again = client.get(f"/v1/models/{MODEL_ID}/state", params={"groups": "age:2,region:0"},
                       headers={**device, "If-None-Match": mine.headers["etag"]})
    every_age = client.get(f"/v1/models/{MODEL_ID}/state", params={"groups": "age:*,region:1"}, headers=device)
    whole = client.get(f"/v1/models/{MODEL_ID}/state", headers=ADMIN)
    no_groups = client.get(f"/v1/models/{MODEL_ID}/state", headers=device)

    assert mine.status_code == 200
    assert mine.headers["x-fedpa-state-version"] == "0" and mine.headers["x-fedpa-model-version"] == "1"
    tensors = decode_tensors(mine.content)
    assert set(tensors) == {t.name for t in SPEC.for_groups({"age": 2, "region": 0})}
    assert all(np.array_equal(tensors[k], bank[k]) for k in tensors)
    assert again.status_code == 304
    assert {k for k in decode_tensors(every_age.content) if "age" in k} == {
        f"layers.0.groups.age.lora_A@{v}" for v in range(3)}
    assert set(decode_tensors(whole.content)) == set(bank)
    assert no_groups.status_code == 422 and no_groups.json()["error"] == "invalid_payload"


def test_publish_stores_the_bank_its_law_makes(app_client, bundle):
    # Prepare: the bundle ships b1 only; w1 and every group value's A follow from the seed
    client = app_client()
    root, bank = bundle
    stored = decode_tensors((root / "shared_state.safetensors").read_bytes())
    # Execute
    publish(client, root)
    whole = decode_tensors(client.get(f"/v1/models/{MODEL_ID}/state", headers=ADMIN).content)
    # Assert: state version 0 is the materialised bank, byte for byte
    assert set(stored) == {"layers.0.gate.b1"}
    assert set(whole) == {t.name for t in SPEC.tensors}
    assert all(whole[n].tobytes() == bank[n].tobytes() for n in bank)
    for t in SPEC.tensors:
        if t.param in DRAWN:  # uniform on ±bound, a different draw per group value
            assert 0 < np.abs(whole[t.name]).max() <= DRAWN[t.param]
    a = [whole[f"layers.0.groups.age.lora_A@{v}"] for v in range(3)]
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])


def test_publish_refuses_a_damaged_stored_state(app_client, bundle):
    client = app_client()
    root, _ = bundle
    stored = decode_tensors((root / "shared_state.safetensors").read_bytes())
    cases = {
        "missing": ({}, r"missing ['layers.0.gate.b1']"),
        "reshaped": ({"layers.0.gate.b1": np.zeros(4, np.float32)}, "has shape (4,), expected (3,)"),
        "whole bank": ({**stored, "layers.0.gate.w1": np.zeros((4, 3), np.float32)},
                       "unexpected ['layers.0.gate.w1']"),
    }
    for name, (tensors, message) in cases.items():
        blob = encode_tensors(tensors)
        (root / "shared_state.safetensors").write_bytes(blob)
        manifest = json.loads((root / "manifest.json").read_text())
        manifest["files"]["shared_state.safetensors"] = {"sha256": sha256(blob), "size": len(blob)}
        (root / "manifest.json").write_text(json.dumps(manifest))

        r = publish(client, root)

        assert r.status_code == 422, (name, r.text)
        assert message in r.json()["detail"], (name, r.json())
    assert client.get(f"/v1/models/{MODEL_ID}", headers=ADMIN).status_code == 404  # nothing published


def test_upload_status_and_admin_aggregate_give_the_numpy_mean(app_client, bundle):
    client = app_client()
    root, bank = bundle
    publish(client, root, {"round_size": 100, "min_reporters": 2, "server_lr": 0.5})
    devices = [register(client) for _ in range(3)]
    groups = [{"age": 0, "region": 1}, {"age": 0, "region": 0}, {"age": 1, "region": 1}]
    sent = []
    for i, (device, g) in enumerate(zip(devices, groups, strict=True)):
        body, deltas = make_update(g, seed=i, example_count=10 * (i + 1))
        r = client.post(f"/v1/models/{MODEL_ID}/updates", content=body, headers=device)
        assert r.status_code == 202, r.text
        assert r.json()["state_version"] == 0 and r.json()["round"] == 0
        sent.append((deltas, 10.0 * (i + 1)))

    status = client.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN).json()
    closed = client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).json()
    state = decode_tensors(client.get(f"/v1/models/{MODEL_ID}/state", headers=ADMIN).content)

    assert status["pending_updates"] == 3 and status["accepted_total"] == 3 and status["aggregated_total"] == 0
    assert status["reporters"] == {"gate": 3, "age=0": 2, "age=1": 1, "region=0": 1, "region=1": 2}
    assert closed["state_version"] == 1 and closed["round"] == 1 and closed["pending_updates"] == 0
    assert closed["aggregated_total"] == 3
    assert closed["last_aggregation"]["skipped_groups"] == {"age=1": 1, "region=0": 1}
    expected = reference_step(bank, sent, server_lr=0.5, min_reporters=2)
    for name in bank:
        np.testing.assert_allclose(state[name], expected[name], rtol=1e-6, atol=1e-7)
    assert np.array_equal(state["layers.0.groups.age.lora_A@1"], bank["layers.0.groups.age.lora_A@1"])


def test_round_closes_by_itself_at_round_size(app_client, bundle):
    client = app_client()
    root, bank = bundle
    publish(client, root, {"round_size": 2, "min_reporters": 1})
    sent = []
    for i in range(2):  # two devices: round_size counts devices
        body, deltas = make_update({"age": i, "region": 0}, seed=10 + i, example_count=5)
        assert client.post(f"/v1/models/{MODEL_ID}/updates", content=body, headers=register(client)).status_code == 202
        sent.append((deltas, 5.0))

    status = wait_for(lambda: (s := client.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN).json())["round"] == 1
                      and s)
    state = decode_tensors(client.get(f"/v1/models/{MODEL_ID}/state", headers=ADMIN).content)

    assert status["state_version"] == 1 and status["last_aggregation"]["trigger"] == "size"
    expected = reference_step(bank, sent)
    for name in bank:
        np.testing.assert_allclose(state[name], expected[name], rtol=1e-6, atol=1e-7)


def test_admin_list_and_republish_supersedes_pending(app_client, bundle, tmp_path):
    client = app_client()
    root, _ = bundle
    publish(client, root)
    device = register(client)
    body, _ = make_update({"age": 0, "region": 0}, seed=1)
    client.post(f"/v1/models/{MODEL_ID}/updates", content=body, headers=device)
    root2 = tmp_path / "v2"
    bank2 = write_bundle(root2, model_version=2, seed=7)

    republished = publish(client, root2)
    listed = client.get("/v1/models", headers=ADMIN).json()
    late, _ = make_update({"age": 0, "region": 0}, seed=2, model_version=1)
    refused = client.post(f"/v1/models/{MODEL_ID}/updates", content=late, headers=device)
    state = decode_tensors(client.get(f"/v1/models/{MODEL_ID}/state", headers=ADMIN).content)

    assert republished.status_code == 201 and republished.json()["model_version"] == 2
    assert [(m["model_id"], m["model_version"], m["pending_updates"], m["state_version"]) for m in listed] == [
        (MODEL_ID, 2, 0, 0)]
    assert refused.status_code == 409 and refused.json()["error"] == "model_version_mismatch"
    assert all(np.array_equal(state[k], bank2[k]) for k in bank2)
