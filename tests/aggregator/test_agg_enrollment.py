"""Enrollment modes, token expiry and rotation, what devices see of the status, the OpenAPI contract."""

from __future__ import annotations

import time

import pytest
from agg_helpers import ADMIN, MODEL_ID, make_settings, make_update, publish, register
from fastapi.testclient import TestClient
from pydantic import ValidationError

from aggregator.core.config import Settings
from aggregator.main import create_app
from fedpa.errors import ConfigError

URL = f"/v1/models/{MODEL_ID}/updates"


@pytest.fixture
def make_client(sqlite_url, bundle):
    clients: list[TestClient] = []

    def factory(**overrides: object) -> TestClient:
        client = TestClient(create_app(make_settings(sqlite_url, **overrides)))
        client.__enter__()
        clients.append(client)
        assert publish(client, bundle[0]).status_code in (201, 409)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


def _key(client, **body: object) -> str:
    r = client.post("/v1/enrollment-keys", json={"model_id": MODEL_ID, **body}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["key"]


def test_enrollment_key_mode_needs_an_issued_key_with_limited_uses(make_client):
    client = make_client(enrollment="enrollment-key")
    key = _key(client, max_devices=2)
    as_key = {"Authorization": f"Bearer {key}"}

    anonymous = client.post("/v1/devices", json={"model_id": MODEL_ID})
    codes = [client.post("/v1/devices", json={"model_id": MODEL_ID}, headers=as_key).status_code for _ in range(3)]
    third = client.post("/v1/devices", json={"model_id": MODEL_ID}, headers=as_key)

    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "invalid_enrollment_key")
    assert codes == [201, 201, 403]
    assert third.json()["error"] == "enrollment_key_used_up"


def test_enrollment_keys_are_rate_limited_and_expire(make_client):
    client = make_client(enrollment="enrollment-key", enrollment_burst=2, enrollment_rate_per_minute=1.0)
    as_key = {"Authorization": f"Bearer {_key(client)}"}
    codes = [client.post("/v1/devices", json={"model_id": MODEL_ID}, headers=as_key).status_code for _ in range(3)]
    expired = {"Authorization": f"Bearer {_key(client, ttl_s=0.001)}"}
    time.sleep(0.01)

    r = client.post("/v1/devices", json={"model_id": MODEL_ID}, headers=expired)

    assert codes == [201, 201, 429]
    assert (r.status_code, r.json()["error"]) == (401, "enrollment_key_expired")


def test_admin_issued_mode_registers_only_with_the_admin_token(make_client):
    client = make_client(enrollment="admin-issued")

    anonymous = client.post("/v1/devices", json={"model_id": MODEL_ID})
    by_admin = client.post("/v1/devices", json={"model_id": MODEL_ID}, headers=ADMIN)

    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "admin_only")
    assert by_admin.status_code == 201 and by_admin.json()["token"].startswith("fpd_")


def test_production_refuses_open_registration_unless_explicit(monkeypatch):
    monkeypatch.setenv("FEDPA_ENV", "production")
    monkeypatch.setenv("FEDPA_ADMIN_TOKEN", "k" * 40)
    monkeypatch.setenv("FEDPA_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    with pytest.raises((ConfigError, ValidationError), match="refuses open device registration"):
        Settings()

    monkeypatch.setenv("FEDPA_ENROLLMENT", "open")
    assert Settings().enrollment_mode == "open"


def test_tokens_expire_and_rotate(make_client):
    client = make_client(token_ttl_s=0.5, token_cache_s=0.0)
    created = client.post("/v1/devices", json={"model_id": MODEL_ID}).json()
    old = {"Authorization": f"Bearer {created['token']}"}

    rotated = client.post("/v1/devices/token", headers=old)
    new = {"Authorization": f"Bearer {rotated.json()['token']}"}
    after_rotation = client.get(f"/v1/models/{MODEL_ID}/status", headers=old)
    fresh = client.get(f"/v1/models/{MODEL_ID}/status", headers=new)
    time.sleep(0.6)
    expired = client.get(f"/v1/models/{MODEL_ID}/status", headers=new)

    assert created["expires_at"] == pytest.approx(time.time(), abs=2)
    assert rotated.status_code == 200 and rotated.json()["device_id"] == created["device_id"]
    assert (after_rotation.status_code, after_rotation.json()["error"]) == (401, "invalid_token")
    assert fresh.status_code == 200
    assert (expired.status_code, expired.json()["error"]) == (401, "token_expired")


def test_devices_see_versions_but_no_per_group_counts(make_client):
    client = make_client()
    device = register(client)
    client.post(URL, content=make_update({"age": 1, "region": 0}, seed=1)[0], headers=device)

    mine = client.get(f"/v1/models/{MODEL_ID}/status", headers=device).json()
    admin = client.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN).json()

    assert set(mine) == {"model_id", "model_version", "state_version", "mode", "round"}
    assert admin["reporters"] == {"gate": 1, "age=1": 1, "region=0": 1}


def test_openapi_contract_mismatches_are_fixed(make_client):
    client = make_client()
    spec = client.get("/openapi.json").json()

    options = client.options("/v1/models")
    bad_json = client.post("/v1/devices", content=b"\xff", headers={"content-type": "application/json"})

    assert options.status_code == 405 and options.headers["allow"] == "GET, POST"
    assert (bad_json.status_code, bad_json.json()["error"]) == (400, "invalid_json")
    assert "400" in spec["paths"]["/v1/devices"]["post"]["responses"]
    groups = next(p for p in spec["paths"]["/v1/models/{model_id}/state"]["get"]["parameters"] if p["name"] == "groups")
    assert "examples" not in groups and "examples" not in groups["schema"]  # no example any model would refuse
