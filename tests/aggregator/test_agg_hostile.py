"""Issue 16: one hostile device cannot break the shared model or other devices' uploads.

One test per defect the outside attack found, each failing on the code before the fix: the
default round config bounds one device's influence; a non-finite or runaway aggregation is
refused (state kept, metric and status show it); out-of-range numbers are 422 before the
database; refusals cost rate-limit tokens; thresholds count devices; storage failures are 503.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from agg_helpers import ADMIN, MODEL_ID, SPEC, make_settings, make_update, publish, register
from fastapi.testclient import TestClient

from aggregator.main import create_app
from fedpa.payload import decode_tensors, encode_tensors
from fedpa.wire import read_metadata

URL = f"/v1/models/{MODEL_ID}/updates"
GATE = "layers.0.gate.w1"


def _state(client) -> dict[str, np.ndarray]:
    return decode_tensors(client.get(f"/v1/models/{MODEL_ID}/state", headers=ADMIN).content)


def _status(client) -> dict:
    return client.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN).json()


def _constant(groups: dict[str, int], value: float) -> dict[str, np.ndarray]:
    return {t.name: np.full(t.shape, value, np.float32) for t in SPEC.for_groups(groups)}


def _honest_round(client, n: int = 9) -> None:
    for i in range(n):
        body, _ = make_update({"age": i % 3, "region": i % 2}, seed=100 + i, example_count=20)
        assert client.post(URL, content=body, headers=register(client)).status_code == 202


def test_default_config_bounds_one_attackers_pull(app_client, bundle):
    """Plain mean, no bound, no cap (the old default): one of 10 devices moved the gate by millions."""
    client = app_client()  # RoundConfig's defaults for everything the publish does not set
    root, bank = bundle
    publish(client, root, {"min_reporters": 1, "round_size": 1000, "deadline_s": None})
    _honest_round(client)
    attack, _ = make_update({"age": 0, "region": 0}, seed=1, example_count=100_000,
                            arrays=_constant({"age": 0, "region": 0}, 1e6))
    assert client.post(URL, content=attack, headers=register(client)).status_code == 202

    closed = client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).json()

    moved = float(np.linalg.norm(_state(client)[GATE] - bank[GATE]))
    assert closed["state_version"] == 1
    assert moved < 2.0  # ≤ weight share × the LDP-derived norm bound (~5.8); honest rounds move ~0.1


def test_float32_max_deltas_cannot_make_the_state_infinite(app_client, bundle):
    client = app_client()
    root, bank = bundle
    publish(client, root, {"min_reporters": 1, "round_size": 1000, "deadline_s": None})
    _honest_round(client, 3)
    for _ in range(2):
        body, _ = make_update({"age": 0, "region": 0}, seed=2,
                              arrays=_constant({"age": 0, "region": 0}, float(np.finfo(np.float32).max)))
        assert client.post(URL, content=body, headers=register(client)).status_code == 202

    client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN)

    state = _state(client)
    assert all(np.isfinite(a).all() for a in state.values())
    assert float(np.abs(state[GATE] - bank[GATE]).max()) < 10


def test_non_finite_aggregation_is_refused_and_the_state_kept(app_client, bundle):
    """With every bound switched off a float32 overflow still cannot become the served state."""
    client = app_client()
    root, bank = bundle
    publish(client, root, {"min_reporters": 1, "norm_bound": None, "weight_cap_median": None, "max_step": None,
                           "server_lr": 2.0})
    for _ in range(2):  # the float64 mean is finite; bank + 2 × mean overflows float32
        body, _ = make_update({"age": 0, "region": 0}, seed=3,
                              arrays=_constant({"age": 0, "region": 0}, float(np.finfo(np.float32).max)))
        assert client.post(URL, content=body, headers=register(client)).status_code == 202

    status = client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).json()

    assert status["state_version"] == 0 and status["round"] == 0 and status["pending_updates"] == 0
    assert status["refused_total"] == 2 and status["aggregated_total"] == 0
    assert status["last_refused"]["outcome"] == "refused"
    assert status["last_refused"]["reason"].startswith("non_finite")
    for name, array in _state(client).items():
        np.testing.assert_array_equal(array, bank[name])
    metrics = client.get("/metrics").text
    assert 'fedpa_aggregations_refused_total{model_id="tiny",reason="non_finite"} 1.0' in metrics
    _honest_round(client, 3)  # the round stays open: later honest updates are aggregated normally
    assert client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).json()["state_version"] == 1


def test_a_step_beyond_max_step_is_refused(app_client, bundle):
    client = app_client()
    root, _ = bundle
    publish(client, root, {"min_reporters": 1, "norm_bound": None, "max_step": 1.0})
    body, _ = make_update({"age": 0, "region": 0}, seed=4, arrays=_constant({"age": 0, "region": 0}, 5.0))
    client.post(URL, content=body, headers=register(client))

    status = client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).json()

    assert status["state_version"] == 0
    assert status["last_refused"]["reason"].startswith("step_too_large")


@pytest.mark.parametrize(("override", "match"), [
    ({"example_count": 2**63 - 1}, "example_count 9223372036854775807 exceeds this model's max_example_count"),
    ({"example_count": 2**63}, "example_count 9223372036854775808 exceeds"),
    ({"base_version": 2**31}, "base_version 2147483648 is out of range"),
    ({"model_version": 2**31}, "model_version 2147483648 is out of range"),
])
def test_out_of_range_numbers_are_422_before_the_database(app_client, bundle, override, match):
    client = app_client()
    publish(client, bundle[0])
    body, _ = make_update({"age": 0, "region": 0}, seed=5, meta_override=override)

    r = client.post(URL, content=body, headers=register(client))

    assert (r.status_code, r.json()["error"]) == (422, "out_of_range") and match in r.json()["detail"], r.text
    assert _status(client)["accepted_total"] == 0


def test_a_hostile_upload_cannot_fail_an_honest_one_in_its_batch(app_client, bundle):
    """Old code: 2^63 passed validation, failed the INSERT and rolled back the honest upload too (503)."""
    from aggregator.services.devices import hash_token
    from aggregator.services.intake import Intake

    client = app_client()
    publish(client, bundle[0])
    runtime = client.app.state.runtime
    with runtime.db.sessions() as session:
        runtime.catalog.current(session, MODEL_ID)
    devices = [runtime.tokens.lookup(hash_token(register(client)["Authorization"].split()[1])) for _ in range(2)]
    intake = Intake(runtime.db, runtime.catalog, runtime.limits)
    honest, _ = make_update({"age": 0, "region": 0}, seed=6)
    hostile, _ = make_update({"age": 0, "region": 0}, seed=7, meta_override={"example_count": 2**63})

    import asyncio

    async def both() -> list:
        try:
            return await asyncio.gather(intake.submit(devices[0], MODEL_ID, hostile),
                                        intake.submit(devices[1], MODEL_ID, honest), return_exceptions=True)
        finally:
            await intake.close()

    refused, accepted = asyncio.run(both())

    assert getattr(refused, "status_code", None) == 422
    assert not isinstance(accepted, Exception) and accepted.update_id > 0


def test_refusals_count_toward_the_rate_limit(app_client, bundle):
    client = app_client(rate_limit_per_minute=1.0, rate_limit_burst=2)
    publish(client, bundle[0])
    device = register(client)
    bad, _ = make_update({"age": 0, "region": 0}, seed=8, meta_override={"base_version": 2**31})

    codes = [client.post(URL, content=bad, headers=device).status_code for _ in range(3)]
    good = client.post(URL, content=make_update({"age": 0, "region": 0}, seed=9)[0], headers=device)

    assert codes == [422, 422, 429]
    assert good.status_code == 429 and "Retry-After" in good.headers


def test_min_reporters_and_round_size_count_devices_not_uploads(app_client, bundle):
    client = app_client()
    root, bank = bundle
    publish(client, root, {"min_reporters": 3, "round_size": 3, "deadline_s": None})
    device = register(client)
    for seed in range(3):  # one device, three uploads for the group age=2
        body, _ = make_update({"age": 2, "region": 1}, seed=seed)
        assert client.post(URL, content=body, headers=device).status_code == 202

    status = _status(client)
    forced = client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).json()

    assert status["round"] == 0 and status["pending_updates"] == 3 and status["pending_devices"] == 1
    assert status["reporters"] == {"gate": 1, "age=2": 1, "region=1": 1}
    assert forced["last_aggregation"]["skipped_groups"] == {"age=2": 1, "region=1": 1}
    state = _state(client)
    np.testing.assert_array_equal(state["layers.0.groups.age.lora_A@2"], bank["layers.0.groups.age.lora_A@2"])


def test_storage_outage_is_503_with_retry_after_even_for_uncached_tokens(sqlite_url, bundle):
    """Old code: a token look-up meeting the dead database answered 500 text/plain."""
    with TestClient(create_app(make_settings(sqlite_url))) as good:
        publish(good, bundle[0])
        device = register(good)
    dead = make_settings("postgresql+psycopg://postgres@127.0.0.1:1/nothing", auto_migrate=False,
                         scheduler_enabled=False)  # nothing listens on port 1
    client = TestClient(create_app(dead), raise_server_exceptions=False)
    body, _ = make_update({"age": 0, "region": 0}, seed=10)

    responses = [client.post(URL, content=body, headers=device),
                 client.get(f"/v1/models/{MODEL_ID}/state?groups=age:0,region:0", headers=device),
                 client.post("/v1/devices", json={"model_id": MODEL_ID}),
                 client.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN)]

    for r in responses:
        assert (r.status_code, r.json()["error"]) == (503, "storage_unavailable"), r.text
        assert r.headers["Retry-After"] == "1"


def _with_header(body: bytes, edit) -> bytes:
    n = int.from_bytes(body[:8], "little")
    header = json.loads(body[8 : 8 + n])
    raw = edit(header)
    raw = raw if isinstance(raw, bytes) else json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body[8 + n :]


def test_bf16_and_deeply_nested_headers_are_422(app_client, bundle):
    client = app_client()
    publish(client, bundle[0])
    device = register(client)
    body, _ = make_update({"age": 0, "region": 0}, seed=11)
    bf16 = _with_header(body, lambda h: h[GATE].update(dtype="BF16"))
    nested = _with_header(body, lambda h: b'{"__metadata__": ' + b"[" * 5000 + b"]" * 5000 + b"}")

    for bad, match in ((bf16, "dtype 'BF16'"), (nested, "nested too deeply")):
        r = client.post(URL, content=bad, headers=device)
        assert (r.status_code, r.json()["error"]) == (422, "invalid_payload") and match in r.json()["detail"]


def test_junk_metadata_is_refused(app_client, bundle):
    client = app_client(max_upload_bytes=1 << 20)
    publish(client, bundle[0])
    body, deltas = make_update({"age": 0, "region": 0}, seed=12)
    meta = read_metadata(body)
    padded = encode_tensors(deltas, metadata={**meta, "junk": "x" * 100_000})

    r = client.post(URL, content=padded, headers=register(client))

    assert r.status_code == 422 and "exceeds the limit of 16384 bytes" in r.json()["detail"]


def test_intake_queue_is_bounded_in_bytes(app_client, bundle):
    from aggregator.services.devices import hash_token
    from aggregator.services.intake import Intake

    client = app_client()
    publish(client, bundle[0])
    runtime = client.app.state.runtime
    with runtime.db.sessions() as session:
        runtime.catalog.current(session, MODEL_ID)
    bodies = [make_update({"age": 0, "region": 0}, seed=20 + i)[0] for i in range(3)]
    intake = Intake(runtime.db, runtime.catalog, runtime.limits, max_queue_bytes=2 * len(bodies[0]) + 10)
    devices = [runtime.tokens.lookup(hash_token(register(client)["Authorization"].split()[1])) for _ in range(3)]

    import asyncio

    async def all_three() -> list:
        try:
            return await asyncio.gather(*(intake.submit(d, MODEL_ID, b) for d, b in zip(devices, bodies, strict=True)),
                                        return_exceptions=True)
        finally:
            await intake.close()

    outcomes = asyncio.run(all_three())

    assert [getattr(o, "code", "accepted") for o in outcomes] == ["accepted", "accepted", "intake_busy"]
    assert intake.queued_bytes == 0


def test_a_body_that_never_finishes_gets_408():
    import asyncio

    from aggregator.core.limits import BodyLimit

    async def app(scope, receive, send):  # reads the whole body, like the upload route
        while (await receive()).get("more_body", False):
            pass

    sent: list[dict] = []

    async def receive():
        if not sent:
            sent.append({"type": "marker"})
            return {"type": "http.request", "body": b"x" * 10, "more_body": True}
        await asyncio.sleep(3600)  # the client stalls

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": URL, "headers": [(b"content-length", b"1000")]}
    asyncio.run(asyncio.wait_for(BodyLimit(app, limit_for=lambda p: 1 << 20, timeout_s=0.2)(scope, receive, send), 5))

    start = next(m for m in sent if m["type"] == "http.response.start")
    body = next(m for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 408 and json.loads(body["body"])["error"] == "body_timeout"


# Declared privacy (issue 15, deliverable 5): checked against the manifest's policy, 422 and nothing stored.
@pytest.mark.parametrize(("declared", "code", "match"), [
    ({"clip_norm": float("inf")}, "invalid_privacy", "privacy.clip_norm must be finite"),
    ({"epsilon_spent": float("inf")}, "invalid_privacy", "privacy.epsilon_spent must be finite"),
    ({"noise_multiplier": 0.4}, "privacy_below_floor", "noise_multiplier 0.4 is weaker"),
    ({"clip_norm": 2.0}, "privacy_below_floor", "clip_norm 2.0 exceeds the model's clip_norm 1.0"),
    ({"delta": 1e-3}, "privacy_below_floor", "delta 0.001 exceeds the model's delta 1e-05"),
    ({"epsilon_spent": 8.5}, "privacy_budget_exceeded", "epsilon_spent 8.5 exceeds the model's epsilon_budget 8.0"),
])
def test_declared_privacy_outside_the_policy_is_422(sqlite_url, tmp_path, declared, code, match):
    from agg_helpers import DECLARED, PRIVACY, write_bundle

    write_bundle(tmp_path / "b", privacy=PRIVACY.model_copy(update={"epsilon_budget": 8.0}))
    with TestClient(create_app(make_settings(sqlite_url))) as client:
        publish(client, tmp_path / "b")
        privacy = json.loads(DECLARED.model_dump_json()) | declared
        body, _ = make_update({"age": 0, "region": 0}, seed=30, meta_override={"privacy": privacy})
        ok, _ = make_update({"age": 0, "region": 0}, seed=31, privacy=DECLARED.model_copy(
            update={"clip_norm": 0.5, "noise_multiplier": 0.6, "epsilon_spent": 8.0}))  # stricter is fine

        r = client.post(URL, content=body, headers=register(client))

        assert (r.status_code, r.json()["error"]) == (422, code) and match in r.json()["detail"], r.text
        assert _status(client)["accepted_total"] == 0
        assert client.post(URL, content=ok, headers=register(client)).status_code == 202


def test_a_non_finite_stored_state_is_never_served(app_client, bundle):
    """Defence in depth: a bank row made non-finite outside the server (restore, tampering) is a 503."""
    from sqlalchemy import update

    from aggregator.models import BankVersion

    client = app_client()
    root, bank = bundle
    publish(client, root)
    poisoned = {k: np.full_like(v, np.inf) for k, v in bank.items()}
    with client.app.state.runtime.db.begin() as session:
        session.execute(update(BankVersion).values(tensors=encode_tensors(poisoned)))

    r = client.get(f"/v1/models/{MODEL_ID}/state?groups=age:0,region:0", headers=register(client))

    assert (r.status_code, r.json()["error"]) == (503, "state_unavailable")
