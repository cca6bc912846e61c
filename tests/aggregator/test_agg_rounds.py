"""Round semantics: deadlines, async staleness weights, robust strategies, bounds — checked with numpy."""

from __future__ import annotations

import numpy as np
import pytest
from agg_helpers import ADMIN, MODEL_ID, SPEC, make_update, publish, reference_step, register, wait_for

from fedpa.payload import decode_tensors

URL = f"/v1/models/{MODEL_ID}/updates"
G = {"age": 0, "region": 1}


def _state(client) -> dict[str, np.ndarray]:
    return decode_tensors(client.get(f"/v1/models/{MODEL_ID}/state", headers=ADMIN).content)


def _status(client) -> dict:
    return client.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN).json()


def _assert_bank(actual, expected):
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_deadline_closes_a_short_round(app_client, bundle):
    client = app_client()
    root, bank = bundle
    publish(client, root, {"round_size": 100, "deadline_s": 0.3})
    body, deltas = make_update(G, seed=1)
    assert client.post(URL, content=body, headers=register(client)).status_code == 202
    assert _status(client)["round"] == 0

    status = wait_for(lambda: (s := _status(client))["round"] == 1 and s, timeout=5)

    assert status["last_aggregation"]["trigger"] == "deadline"
    _assert_bank(_state(client), reference_step(bank, [(deltas, 10.0)]))


def test_async_buffer_downweights_stale_updates(app_client, bundle):
    client = app_client()
    root, bank = bundle
    publish(client, root, {"mode": "async", "buffer_size": 100, "staleness_exponent": 0.5, "max_staleness": 5})
    device = register(client)
    first, d0 = make_update(G, seed=1, base_version=0, example_count=4)
    client.post(URL, content=first, headers=device)
    client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN)
    bank1 = reference_step(bank, [(d0, 4.0)])
    stale, d_stale = make_update({"age": 0, "region": 0}, seed=2, base_version=0, example_count=30)
    fresh, d_fresh = make_update(G, seed=3, base_version=1, example_count=10)
    for body in (stale, fresh):
        r = client.post(URL, content=body, headers=device)
        assert r.status_code == 202 and r.json()["state_version"] == 1

    status = client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).json()

    assert status["state_version"] == 2 and status["mode"] == "async"
    expected = reference_step(bank1, [(d_stale, 30.0), (d_fresh, 10.0)], staleness=[1, 0], exponent=0.5)
    _assert_bank(_state(client), expected)


def test_async_buffer_flushes_at_k(app_client, bundle):
    client = app_client()
    root, _ = bundle
    publish(client, root, {"mode": "async", "buffer_size": 3})
    device = register(client)
    for seed in range(3):
        client.post(URL, content=make_update(G, seed=seed)[0], headers=device)

    status = wait_for(lambda: (s := _status(client))["state_version"] == 1 and s)

    assert status["aggregated_total"] == 3 and status["last_aggregation"]["trigger"] == "size"


@pytest.mark.parametrize("strategy", ["median", "trimmed-mean"])
def test_robust_strategies_are_coordinatewise(app_client, bundle, strategy):
    client = app_client()
    root, bank = bundle
    publish(client, root, {"strategy": strategy, "trim_beta": 0.34, "min_reporters": 1, "norm_bound": None})
    sent = []
    for seed, scale in enumerate((1.0, 2.0, 100.0)):  # one outlier; three devices (robust rules count devices)
        deltas = {t.name: np.full(t.shape, scale * (seed + 1), np.float32) for t in SPEC.for_groups(G)}
        client.post(URL, content=make_update(G, seed=seed, arrays=deltas)[0], headers=register(client))
        sent.append(deltas)

    client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN)

    state = _state(client)
    for name in sent[0]:
        stacked = np.stack([d[name] for d in sent])
        robust = np.median(stacked, axis=0) if strategy == "median" else np.sort(stacked, axis=0)[1:2].mean(axis=0)
        np.testing.assert_allclose(state[name], bank[name] + robust, rtol=1e-6)
        assert np.all(state[name] - bank[name] < 10)  # the outlier did not get through


def test_norm_bound_and_weight_cap(app_client, bundle):
    client = app_client()
    root, bank = bundle
    publish(client, root, {"norm_bound": 1.0, "weight_cap": 20, "min_reporters": 1})
    big = {t.name: np.full(t.shape, 3.0, np.float32) for t in SPEC.for_groups(G)}
    small = {t.name: np.full(t.shape, 0.01, np.float32) for t in SPEC.for_groups(G)}
    client.post(URL, content=make_update(G, seed=1, arrays=big, example_count=1000)[0], headers=register(client))
    client.post(URL, content=make_update(G, seed=2, arrays=small, example_count=20)[0], headers=register(client))

    client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN)

    norm = np.sqrt(sum(float(np.square(a, dtype=np.float64).sum()) for a in big.values()))
    scaled = {k: (v.astype(np.float64) / norm).astype(np.float32) for k, v in big.items()}
    _assert_bank(_state(client), reference_step(bank, [(scaled, 20.0), (small, 20.0)]))


def test_admin_aggregate_with_nothing_pending_is_a_noop(app_client, bundle):
    client = app_client()
    root, _ = bundle
    publish(client, root)

    status = client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).json()

    assert (status["state_version"], status["round"], status["last_aggregation"]) == (0, 0, None)


def test_old_state_versions_are_pruned(app_client, bundle):
    client = app_client(keep_state_versions=2)
    root, _ = bundle
    publish(client, root, {"mode": "async", "buffer_size": 100, "max_staleness": 10})
    device = register(client)
    for seed in range(4):
        client.post(URL, content=make_update(G, seed=seed, base_version=seed)[0], headers=device)
        client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN)

    from sqlalchemy import select

    from aggregator.models import BankVersion, Update

    with client.app.state.runtime.db.sessions() as s:
        versions = sorted(s.scalars(select(BankVersion.state_version)))
        payloads = s.scalars(select(Update.tensors)).all()
    assert versions == [3, 4]
    assert payloads == [None] * 4  # aggregated updates keep no tensors


def test_pending_update_of_an_old_model_version_is_retired(app_client, bundle, tmp_path):
    """An async upload that commits just after a republish can never be aggregated: it is retired."""
    from agg_helpers import write_bundle
    from sqlalchemy import insert, select

    from aggregator.models import Update

    client = app_client()
    root, _ = bundle
    publish(client, root, {"mode": "async", "buffer_size": 100})
    device = register(client)
    client.post(URL, content=make_update(G, seed=1)[0], headers=device)
    write_bundle(tmp_path / "v2", model_version=2)
    publish(client, tmp_path / "v2", {"mode": "async", "buffer_size": 100})
    runtime = client.app.state.runtime
    with runtime.db.begin() as s:  # the racing upload, committed after the publish
        row = s.execute(select(Update).limit(1)).scalar_one()
        s.execute(insert(Update).values(
            model_pk=row.model_pk, model_version=1, device_pk=row.device_pk, nonce="late-" + "x" * 16,
            base_version=0, round=0, groups_key=row.groups_key, example_count=1, privacy_json=row.privacy_json,
            tensors=b"", nbytes=0, received_at=0.0, status="pending"))

    runtime.close_due_rounds()

    with runtime.db.sessions() as s:
        statuses = s.scalars(select(Update.status).order_by(Update.id)).all()
    assert statuses == ["superseded", "superseded"]
    assert _status(client)["pending_updates"] == 0


@pytest.mark.parametrize("keep", [False, True], ids=["dropped", "kept"])
def test_used_payloads_are_dropped_after_the_aggregation_unless_kept(app_client, bundle, keep):
    from sqlalchemy import select, update

    from aggregator.models import Update
    from aggregator.services.rounds import scrub_payloads

    client = app_client(keep_update_payloads=keep, scheduler_enabled=False)
    publish(client, bundle[0], {"round_size": 100})
    for seed in range(3):
        assert client.post(URL, content=make_update(G, seed=seed)[0], headers=register(client)).status_code == 202
    db = client.app.state.runtime.db

    def payloads() -> list[tuple[str, bool]]:
        with db.sessions() as session:
            return [(status, tensors is not None) for status, tensors in
                    session.execute(select(Update.status, Update.tensors).order_by(Update.id))]

    assert client.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN).status_code == 200
    assert payloads() == [("aggregated", keep)] * 3

    # What a crash between the aggregation and the scrub leaves is dropped by the next pass, in chunks.
    with db.begin() as session:
        session.execute(update(Update).values(tensors=b"left over"))
    assert scrub_payloads(db, chunk=2) == 3
    assert payloads() == [("aggregated", False)] * 3
    assert scrub_payloads(db) == 0
