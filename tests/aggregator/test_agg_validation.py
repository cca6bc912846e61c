"""Every bad-input class gets its precise 4xx, and the database is left exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
from agg_helpers import ADMIN, DECLARED, MODEL_ID, SPEC, make_settings, make_update, publish, register, write_bundle
from sqlalchemy import func, select

from aggregator.models import Aggregation, BankVersion, Device, Model, Update
from aggregator.services.devices import hash_token

GROUPS = {"age": 1, "region": 0}
URL = f"/v1/models/{MODEL_ID}/updates"


def snapshot(client) -> tuple:
    """Everything an upload could change: updates, bank versions, aggregations, round, buckets."""
    db = client.app.state.runtime.db
    with db.sessions() as s:
        return (
            s.execute(select(func.count(), func.max(Update.id))).one(),
            s.scalar(select(func.count()).select_from(BankVersion)),
            s.scalar(select(func.count()).select_from(Aggregation)),
            s.execute(select(Model.model_id, Model.state_version, Model.round).order_by(Model.id)).all(),
            s.execute(select(Device.id, Device.bucket_tokens, Device.bucket_at).order_by(Device.id)).all(),
        )


@pytest.fixture
def ready(app_client, bundle):
    client = app_client()
    root, _ = bundle
    assert publish(client, root, {"round_size": 100}).status_code == 201
    return client, register(client)


def _bad_arrays(kind: str) -> dict[str, np.ndarray]:
    _, deltas = make_update(GROUPS, seed=3)
    name = "layers.0.gate.w1"
    if kind == "shape":
        deltas[name] = np.zeros((3, 4), np.float32)
    elif kind == "dtype":
        deltas[name] = deltas[name].astype(np.float64)
    elif kind == "nan":
        deltas[name][0, 0] = np.nan
    elif kind == "inf":
        deltas[name][1, 1] = np.inf
    elif kind == "missing":
        deltas.pop(name)
    elif kind == "unknown":
        deltas["layers.9.gate.w1"] = np.zeros((4, 3), np.float32)
    elif kind == "other_group":
        deltas["layers.0.groups.age.lora_A@2"] = np.zeros((2, 4), np.float32)
    return deltas


@pytest.mark.parametrize(("kind", "match"), [
    ("shape", "shape"), ("dtype", "dtype"), ("nan", "NaN"), ("inf", "NaN or infinite"),
    ("missing", "missing tensors"), ("unknown", "unexpected tensors"), ("other_group", "unexpected tensors"),
])
def test_bad_tensors_are_422(ready, kind, match):
    client, device = ready
    body, _ = make_update(GROUPS, seed=3, arrays=_bad_arrays(kind))
    before = snapshot(client)

    r = client.post(URL, content=body, headers=device)

    assert r.status_code == 422 and r.json()["error"] == "invalid_payload"
    assert match in r.json()["detail"]
    assert snapshot(client) == before


def _meta_case(case: str) -> bytes:
    if case == "not_safetensors":
        return b"\x00" * 64
    if case == "truncated":
        return make_update(GROUPS, seed=1)[0][:-10]
    if case == "no_metadata":
        from fedpa.payload import encode_tensors

        return encode_tensors(make_update(GROUPS, seed=1)[1])
    if case == "bad_count":
        return make_update(GROUPS, seed=1, meta_override={"example_count": 0})[0]
    if case == "bad_nonce":
        return make_update(GROUPS, seed=1, meta_override={"nonce": "short"})[0]
    if case == "extra_field":
        return make_update(GROUPS, seed=1, meta_override={"surprise": 1})[0]
    if case == "bad_group_value":
        return make_update({"age": 7, "region": 0}, seed=1, arrays={})[0]
    raise AssertionError(case)


@pytest.mark.parametrize(("case", "match"), [
    ("not_safetensors", "safetensors"), ("truncated", "not valid safetensors"),
    ("no_metadata", "fedpa.update"), ("bad_count", "example_count"), ("bad_nonce", "nonce"),
    ("extra_field", "surprise"), ("bad_group_value", "out of range"),
])
def test_malformed_metadata_is_422(ready, case, match):
    client, device = ready
    before = snapshot(client)

    r = client.post(URL, content=_meta_case(case), headers=device)

    assert r.status_code == 422 and r.json()["error"] == "invalid_payload", r.text
    assert match in r.json()["detail"]
    assert snapshot(client) == before


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 401, "missing_token"),
    ({"Authorization": "Bearer not-a-token"}, 401, "invalid_token"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "missing_token"),
    (ADMIN, 403, "device_only"),
])
def test_auth_failures(ready, headers, status, code):
    client, _ = ready
    body, _ = make_update(GROUPS, seed=1)
    before = snapshot(client)

    r = client.post(URL, content=body, headers=headers)

    assert (r.status_code, r.json()["error"]) == (status, code)
    assert snapshot(client) == before


def test_token_of_another_model_is_403(ready, tmp_path):
    client, _ = ready
    write_bundle(tmp_path / "other", model_id="other")
    publish(client, tmp_path / "other")
    other_device = register(client, "other")
    body, _ = make_update(GROUPS, seed=1)
    before = snapshot(client)

    upload = client.post(URL, content=body, headers=other_device)
    state = client.get(f"/v1/models/{MODEL_ID}/state", params={"groups": "age:1,region:0"}, headers=other_device)
    publish_as_device = client.post("/v1/models", files={"files": ("manifest.json", b"{}")}, headers=other_device)

    assert (upload.status_code, upload.json()["error"]) == (403, "wrong_model")
    assert "scoped to model 'other'" in upload.json()["detail"]
    assert state.status_code == 403
    assert (publish_as_device.status_code, publish_as_device.json()["error"]) == (403, "admin_only")
    assert snapshot(client) == before


def test_revoked_token_is_401(app_client, bundle):
    from aggregator.services.devices import revoke_device

    client = app_client(token_cache_s=0)
    publish(client, bundle[0])
    r = client.post("/v1/devices", json={"model_id": MODEL_ID})
    device = {"Authorization": f"Bearer {r.json()['token']}"}
    revoke_device(client.app.state.runtime.db, r.json()["device_id"])
    before = snapshot(client)

    refused = client.post(URL, content=make_update(GROUPS, seed=1)[0], headers=device)

    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_token")
    assert snapshot(client) == before


def test_metadata_for_another_model_or_version(ready):
    client, device = ready
    wrong_id, _ = make_update(GROUPS, seed=1, model_id="other")
    wrong_version, _ = make_update(GROUPS, seed=1, model_version=2)
    before = snapshot(client)

    r1 = client.post(URL, content=wrong_id, headers=device)
    r2 = client.post(URL, content=wrong_version, headers=device)
    r3 = client.post("/v1/models/nope/updates", content=wrong_id, headers=device)

    assert (r1.status_code, r1.json()["error"]) == (422, "model_id_mismatch")
    assert (r2.status_code, r2.json()["error"]) == (409, "model_version_mismatch")
    assert "model_version 1" in r2.json()["detail"]
    assert (r3.status_code, r3.json()["error"]) == (403, "wrong_model")
    assert snapshot(client) == before


def test_stale_base_version_in_sync_mode(ready):
    client, device = ready
    future, _ = make_update(GROUPS, seed=1, base_version=1)
    before = snapshot(client)
    r = client.post(URL, content=future, headers=device)
    assert (r.status_code, r.json()["error"]) == (409, "stale_base")
    assert snapshot(client) == before

    ok, _ = make_update(GROUPS, seed=2)
    assert client.post(URL, content=ok, headers=device).status_code == 202
    assert client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).json()["state_version"] == 1
    old, _ = make_update(GROUPS, seed=3, base_version=0)
    before = snapshot(client)
    r = client.post(URL, content=old, headers=device)
    assert (r.status_code, r.json()["error"]) == (409, "stale_base")
    assert "current shared state is version 1" in r.json()["detail"]
    assert snapshot(client) == before


def test_replayed_nonce_is_409_and_stored_once(ready):
    client, device = ready
    body, _ = make_update(GROUPS, seed=1, nonce="n" * 20)
    first = client.post(URL, content=body, headers=device)
    before = snapshot(client)

    again = client.post(URL, content=body, headers=device)
    other_device = client.post(URL, content=body, headers=register(client))

    assert first.status_code == 202
    assert (again.status_code, again.json()["error"]) == (409, "replayed_nonce")
    assert other_device.status_code == 409
    assert snapshot(client)[:4] == before[:4]  # a new device row was added by register(); nothing else


def test_oversized_body_is_413_declared_or_streamed(ready):
    client, device = ready
    big = make_update(GROUPS, seed=1)[0] + b"\x00" * (64 * 1024)
    before = snapshot(client)

    declared = client.post(URL, content=big, headers=device)
    streamed = client.post(URL, content=iter([big[:40_000], big[40_000:]]), headers=device)
    metrics = client.get("/metrics").text

    assert (declared.status_code, declared.json()["error"]) == (413, "payload_too_large")
    assert "exceeds the limit of 65536 bytes" in declared.json()["detail"]
    assert (streamed.status_code, streamed.json()["error"]) == (413, "payload_too_large")
    assert snapshot(client) == before
    assert 'fedpa_uploads_rejected_total{reason="payload_too_large"} 2.0' in metrics


def test_weaker_declared_privacy_is_422(ready):
    client, device = ready
    weak = DECLARED.model_copy(update={"noise_multiplier": 0.1})
    none = DECLARED.model_copy(update={"mechanism": "none", "noise_multiplier": 0.0})
    before = snapshot(client)

    r1 = client.post(URL, content=make_update(GROUPS, seed=1, privacy=weak)[0], headers=device)
    r2 = client.post(URL, content=make_update(GROUPS, seed=1, privacy=none)[0], headers=device)

    assert (r1.status_code, r1.json()["error"]) == (422, "privacy_below_floor")
    assert (r2.status_code, r2.json()["error"]) == (422, "privacy_below_floor")
    assert snapshot(client) == before


def test_rate_limit_is_429_per_device(app_client, bundle):
    client = app_client(rate_limit_per_minute=1.0, rate_limit_burst=2)
    root, _ = bundle
    publish(client, root, {"round_size": 100})
    device, other = register(client), register(client)
    for seed in range(2):
        assert client.post(URL, content=make_update(GROUPS, seed=seed)[0], headers=device).status_code == 202
    before = snapshot(client)

    limited = client.post(URL, content=make_update(GROUPS, seed=5)[0], headers=device)
    after_refusal = snapshot(client)
    others_ok = client.post(URL, content=make_update(GROUPS, seed=6)[0], headers=other)

    assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert after_refusal == before
    assert others_ok.status_code == 202
    assert 'fedpa_uploads_rejected_total{reason="rate_limited"} 1.0' in client.get("/metrics").text


def test_async_mode_refuses_too_stale_and_future_bases(app_client, bundle):
    client = app_client()
    root, _ = bundle
    publish(client, root, {"mode": "async", "buffer_size": 1, "max_staleness": 1})
    device = register(client)
    for version in range(2):  # two buffer flushes: state version 2
        client.post(URL, content=make_update(GROUPS, seed=version, base_version=version)[0], headers=device)
        client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN)
    before = snapshot(client)

    too_old = client.post(URL, content=make_update(GROUPS, seed=9, base_version=0)[0], headers=device)
    future = client.post(URL, content=make_update(GROUPS, seed=9, base_version=3)[0], headers=device)

    assert before[3][0][1] == 2
    assert (too_old.status_code, too_old.json()["error"]) == (409, "stale_base")
    assert "[1, 2]" in too_old.json()["detail"]
    assert (future.status_code, future.json()["error"]) == (409, "stale_base")
    assert snapshot(client) == before


def test_unknown_routes_and_bad_requests_share_the_error_shape(ready):
    client, device = ready

    missing = client.get("/v1/nothing-here")
    wrong_method = client.put(URL, headers=device)
    bad_json = client.post("/v1/devices", json={"model": MODEL_ID})
    unknown_model = client.post("/v1/devices", json={"model_id": "nope"})
    bad_groups = client.get(f"/v1/models/{MODEL_ID}/state", params={"groups": "age=1"}, headers=device)

    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "method_not_allowed")
    assert (bad_json.status_code, bad_json.json()["error"]) == (422, "invalid_request")
    assert (unknown_model.status_code, unknown_model.json()["error"]) == (404, "unknown_model")
    assert (bad_groups.status_code, bad_groups.json()["error"]) == (422, "invalid_payload")
    assert SPEC.attributes == {"age": 3, "region": 2}


def test_one_batch_gives_each_upload_its_own_verdict(app_client, bundle):
    """Group commit: refusals inside one transaction change nothing and do not affect the others."""
    from aggregator.services.intake_sql import PendingUpdate, store_updates
    from fedpa.wire import decode_update

    client = app_client(rate_limit_per_minute=1.0, rate_limit_burst=2)
    root, _ = bundle
    publish(client, root, {"round_size": 100})
    runtime = client.app.state.runtime
    pks = {name: _device(client).pk for name in ("busy", "stale", "fine")}
    replayer = register(client)
    pks["replayer"] = runtime.tokens.lookup(hash_token(replayer["Authorization"].split()[1])).pk
    stored, _ = make_update(GROUPS, seed=1, nonce="already-stored-nonce")
    assert client.post(URL, content=stored, headers=replayer).status_code == 202
    before = snapshot(client)
    with runtime.db.sessions() as session:
        info = runtime.catalog.current(session, MODEL_ID)

    def pending(name: str, **kwargs) -> PendingUpdate:
        body, _ = make_update(GROUPS, **kwargs)
        return PendingUpdate(info, decode_update(body)[0], pks[name], body, 0.0)

    batch = [
        pending("busy", seed=2), pending("busy", seed=3), pending("busy", seed=4),  # burst 2: the third is refused
        pending("replayer", seed=5, nonce="already-stored-nonce"),
        pending("stale", seed=6, base_version=3),
        # the same nonce twice in one batch: the second is a replay
        pending("fine", seed=7, nonce="twice-in-one-batch"), pending("fine", seed=8, nonce="twice-in-one-batch"),
    ]
    outcomes = store_updates(runtime.db, batch, limits=runtime.limits)

    codes = [getattr(o, "code", "accepted") for o in outcomes]
    assert codes == ["accepted", "accepted", "rate_limited", "replayed_nonce", "stale_base", "accepted",
                     "replayed_nonce"]
    after = snapshot(client)
    accepted_ids = sorted(o.update_id for o in outcomes if not isinstance(o, Exception))
    with runtime.db.sessions() as session:
        nonces = dict(session.execute(select(Update.id, Update.nonce).where(Update.id.in_(accepted_ids))).all())
    assert sorted(nonces.values()) == sorted(batch[i].meta.nonce for i in (0, 1, 5))
    assert after[0][0] == before[0][0] + 3
    buckets_before = {pk: (tokens, at) for pk, tokens, at in before[4]}
    buckets_after = {pk: (tokens, at) for pk, tokens, at in after[4]}
    for name in ("replayer", "stale"):  # refused, stored nothing, but paid one token (issue 16)
        assert buckets_after[pks[name]][0] == pytest.approx(buckets_before[pks[name]][0] - 1.0, abs=0.1)
    assert buckets_after[pks["busy"]][0] < 1.0  # both tokens taken, none refunded wrongly


def test_concurrent_uploads_share_one_transaction(app_client, bundle):
    """Uploads queued while the committer is busy go into one batch; each gets its own receipt."""
    client = app_client()
    publish(client, bundle[0], {"round_size": 100})
    intake, devices = _warm_intake(client, devices=10)
    batches: list[int] = []
    intake.on_batch = batches.append

    # all ten are validated and queued before the committer first runs
    [receipts] = _submit_all(intake, devices, [make_update(GROUPS, seed=i)[0] for i in range(10)])

    assert batches == [10]
    assert len({r.update_id for r in receipts}) == 10
    assert client.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN).json()["pending_updates"] == 10


def _device(client):
    """A newly registered device, as the intake sees it (DeviceAuth)."""
    token = register(client)["Authorization"].split()[1]
    return client.app.state.runtime.tokens.lookup(hash_token(token))


def _warm_intake(client, *, devices: int = 3, **kwargs):
    """An Intake over the app's catalog (warmed: validation needs no thread) and ``devices`` devices."""
    from aggregator.services.intake import Intake

    runtime = client.app.state.runtime
    with runtime.db.sessions() as session:
        runtime.catalog.current(session, MODEL_ID)
    return (Intake(kwargs.pop("db", runtime.db), runtime.catalog, runtime.limits, **kwargs),
            [_device(client) for _ in range(devices)])


def _submit_all(intake, devices, *rounds: list[bytes]) -> list[list]:
    """Each round's uploads submitted together (one device each); the outcomes of every round."""
    import asyncio

    async def run() -> list[list]:
        try:
            return [await asyncio.gather(*(intake.submit(d, MODEL_ID, b) for d, b in zip(devices, bodies,
                                                                                          strict=False)),
                                         return_exceptions=True) for bodies in rounds]
        finally:
            await intake.close()

    return asyncio.run(run())


def test_full_intake_queue_answers_503_and_stores_nothing_more(app_client, bundle):
    client = app_client()
    publish(client, bundle[0], {"round_size": 100})
    intake, devices = _warm_intake(client, max_queue=2)

    [outcomes] = _submit_all(intake, devices, [make_update(GROUPS, seed=i)[0] for i in range(3)])

    assert [getattr(o, "code", "accepted") for o in outcomes] == ["accepted", "accepted", "intake_busy"]
    assert (outcomes[2].status_code, outcomes[2].headers["Retry-After"]) == (503, "1")
    assert client.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN).json()["pending_updates"] == 2


def test_database_failure_answers_503_for_the_whole_batch(app_client, bundle):
    """A batch the database could not store is refused as a whole (retryable), and the committer goes on."""
    from aggregator.db import Database

    client = app_client()
    publish(client, bundle[0], {"round_size": 100})
    unreachable = Database(make_settings("postgresql+psycopg://postgres@127.0.0.1:1/nothing"))  # nothing listens
    intake, devices = _warm_intake(client, db=unreachable)

    first, later = _submit_all(intake, devices, [make_update(GROUPS, seed=i)[0] for i in range(3)],
                               [make_update(GROUPS, seed=9)[0]])

    assert [(o.status_code, o.code) for o in first + later] == [(503, "storage_unavailable")] * 4
    assert client.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN).json()["pending_updates"] == 0


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_committer_reconnects_when_postgres_drops_its_connection(app_client, bundle, pg_database):
    """Dropped while idle: found at BEGIN, retried on a new connection (202). Dropped inside a
    transaction: that batch is 503 with nothing stored, and the next one connects afresh."""
    import asyncio

    import psycopg

    from aggregator.db import _LOCK_CLASS

    client = app_client()
    publish(client, bundle[0], {"round_size": 100})  # synchronous rounds: a batch first takes the round lock
    runtime = client.app.state.runtime
    intake, devices = _warm_intake(client, devices=4)
    model_pk = runtime.catalog.cached(MODEL_ID, 1).pk
    bodies = [make_update(GROUPS, seed=i)[0] for i in range(4)]
    admin = psycopg.connect(pg_database, autocommit=True, application_name="fedpa-tests-admin")

    def committer_backends(waiting_for_lock: bool = False) -> list[int]:
        # Only this session's database (another aggregator on the server has committers of the same
        # name), and only this test's committer: not one an earlier test may have left in it.
        sql = ("SELECT pid FROM pg_stat_activity WHERE application_name = 'fedpa-intake-0' "
               "AND datname = current_database()")
        if waiting_for_lock:
            sql += " AND wait_event_type = 'Lock'"
        return [pid for (pid,) in admin.execute(sql) if pid not in foreign]

    foreign = set(committer_backends())  # before this test's intake has connected

    def drop(pids: list[int]) -> None:
        assert len(pids) == 1, pids
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pids[0],))

    async def run() -> list:
        outcomes: list = [await intake.submit(devices[0], MODEL_ID, bodies[0])]
        first_backend = committer_backends()
        drop(first_backend)
        outcomes.append(await intake.submit(devices[1], MODEL_ID, bodies[1]))
        assert committer_backends() != first_backend
        with psycopg.connect(pg_database, application_name="fedpa-tests-holder") as holder:  # locks are per database
            holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, model_pk))  # as an aggregation
            blocked = asyncio.ensure_future(intake.submit(devices[2], MODEL_ID, bodies[2]))
            for _ in range(200):
                if committer_backends(waiting_for_lock=True):
                    break
                await asyncio.sleep(0.02)
            drop(committer_backends(waiting_for_lock=True))
            outcomes.extend(await asyncio.gather(blocked, return_exceptions=True))
        outcomes.append(await intake.submit(devices[3], MODEL_ID, bodies[3]))
        await intake.close()
        return outcomes

    try:
        outcomes = asyncio.run(run())
    finally:
        admin.close()

    assert [getattr(o, "code", "accepted") for o in outcomes] == ["accepted", "accepted", "storage_unavailable",
                                                                  "accepted"]
    assert client.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN).json()["pending_updates"] == 3


@pytest.mark.parametrize(("delay_s", "batches"), [(0.0, [1, 1]), (0.5, [2])])
def test_commit_delay_lets_a_small_batch_wait_for_company(app_client, bundle, delay_s, batches):
    import asyncio

    client = app_client()
    publish(client, bundle[0], {"round_size": 100})
    intake, devices = _warm_intake(client, commit_delay_s=delay_s)
    sizes: list[int] = []
    intake.on_batch = sizes.append
    bodies = [make_update(GROUPS, seed=i)[0] for i in range(2)]

    async def late(device, body):
        await asyncio.sleep(0.1)  # arrives while the first upload's batch waits (or is already stored)
        return await intake.submit(device, MODEL_ID, body)

    async def run() -> list:
        try:
            return await asyncio.gather(intake.submit(devices[0], MODEL_ID, bodies[0]), late(devices[1], bodies[1]))
        finally:
            await intake.close()

    receipts = asyncio.run(run())

    assert sizes == batches
    assert len({r.update_id for r in receipts}) == 2


def test_token_cache_expiries_are_spread_within_the_ttl(app_client, bundle):
    """A revoked token lives at most token_cache_s; devices seen together do not all expire together."""
    import time

    from aggregator.services.devices import TokenCache, revoke_device

    client = app_client()
    publish(client, bundle[0], {"round_size": 100})
    runtime = client.app.state.runtime
    tokens = [register(client)["Authorization"].split()[1] for _ in range(40)]
    cache = TokenCache(runtime.db, ttl_s=10.0)
    start = time.monotonic()
    devices = [cache.lookup(hash_token(t)) for t in tokens]
    expiries = [cache._items[hash_token(t)][0] - start for t in tokens]
    revoke_device(runtime.db, devices[0].device_id)

    assert all(d is not None for d in devices)
    assert all(4.9 <= e <= 10.1 for e in expiries) and max(expiries) - min(expiries) > 1.0
    assert cache.lookup(hash_token(tokens[0])) == devices[0]  # cached: revocation not seen yet
    assert TokenCache(runtime.db, ttl_s=10.0).lookup(hash_token(tokens[0])) is None  # a fresh lookup sees it
