"""The edge client's device-token rotation against a real uvicorn server (docs/api.md, Authentication)."""

from __future__ import annotations

import time

import pytest
from agg_helpers import ADMIN_TOKEN, MODEL_ID, aggregator_process, write_bundle

edge_client = pytest.importorskip("edge.client")

TTL_S = 4.0


class Clock:
    """The device's clock: real time plus an offset a test moves forward (no sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def server(sqlite_url, tmp_path):
    env = {"FEDPA_TOKEN_TTL_S": str(TTL_S), "FEDPA_TOKEN_CACHE_S": "0"}
    with aggregator_process(sqlite_url, env=env) as started:
        write_bundle(tmp_path / "b")
        with edge_client.AggregatorClient(started.url, token=ADMIN_TOKEN) as admin:
            admin.publish(tmp_path / "b")
        yield started


def test_the_token_is_rotated_once_three_quarters_of_its_life_have_passed(server):
    clock, saved = Clock(), []
    with edge_client.AggregatorClient(server.url, clock=clock) as device:
        device.on_token = saved.append
        device_id, first = device.register(MODEL_ID)
        device.status(MODEL_ID)  # young token: used as it is
        unchanged = device.token
        clock.offset = edge_client.ROTATE_AT * TTL_S  # the device's clock says the token is 3/4 through its life
        status = device.status(MODEL_ID)
        with pytest.raises(edge_client.Refused) as old:
            device.request("GET", f"/v1/models/{MODEL_ID}/status", token=first)

    assert unchanged == first and status["model_id"] == MODEL_ID
    assert device.token != first and device.identity.device_id == device_id  # same device, new token
    assert [t.token for t in saved] == [first, device.token]  # each new token handed to the device to persist
    assert device.identity.expires_at is not None and device.identity.expires_at > saved[0].expires_at
    assert (old.value.status, old.value.code) == (401, "invalid_token")  # the rotated-away token is dead


def test_an_expired_token_is_replaced_by_registering_again(server):
    clock, saved = Clock(), []
    with edge_client.AggregatorClient(server.url, clock=clock) as device:
        device.on_token = saved.append
        device_id, first = device.register(MODEL_ID)
        clock.offset = -3600.0  # the device thinks no time passed: no rotation before the server refuses
        time.sleep(TTL_S + 0.2)
        with pytest.raises(edge_client.Refused) as expired:
            device.request("GET", f"/v1/models/{MODEL_ID}/status", token=first)
        status = device.status(MODEL_ID)  # 401 token_expired → register again → the call goes through

    assert (expired.value.status, expired.value.code) == (401, "token_expired")
    assert status["model_id"] == MODEL_ID
    assert device.token != first and device.identity.device_id != device_id
    assert [t.token for t in saved] == [first, device.token]
