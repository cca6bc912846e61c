"""The edge engineer's REST client against this server: the docs/api.md contract from both sides."""

from __future__ import annotations

import numpy as np
import pytest
from agg_helpers import ADMIN_TOKEN, MODEL_ID, SPEC, make_update, reference_step

edge_client = pytest.importorskip("edge.client")


def test_edge_client_round_trip(app_client, bundle):
    test_client = app_client()
    root, bank = bundle
    admin = edge_client.AggregatorClient("http://testserver", token=ADMIN_TOKEN, http=test_client)
    device = edge_client.AggregatorClient("http://testserver", http=test_client)

    published = admin.publish(root, config={"round_size": 1, "min_reporters": 1})
    device.register(MODEL_ID)
    program = device.file(MODEL_ID, "inference.onnx")
    manifest = device.manifest(MODEL_ID)
    state = device.state(MODEL_ID, {"age": 1, "region": 0})
    unchanged = device.state(MODEL_ID, {"age": 1, "region": 0}, etag=state.etag)
    body, deltas = make_update({"age": 1, "region": 0}, seed=4, base_version=state.state_version)
    receipt = device.upload(MODEL_ID, body)
    with pytest.raises(edge_client.Refused) as replay:
        device.upload(MODEL_ID, body)
    status = admin.aggregate(MODEL_ID) if device.status(MODEL_ID)["state_version"] == 0 else device.status(MODEL_ID)
    with pytest.raises(edge_client.Refused) as stale:
        device.upload(MODEL_ID, make_update({"age": 1, "region": 0}, seed=5, base_version=0)[0])
    after = device.state(MODEL_ID, {"age": 1, "region": 0}, etag=state.etag)

    assert published["model_version"] == 1
    assert program == (root / "inference.onnx").read_bytes()
    assert manifest["model_id"] == MODEL_ID and "inference.onnx" in manifest["files"]
    assert set(state.tensors) == {t.name for t in SPEC.for_groups({"age": 1, "region": 0})}
    assert (state.state_version, state.model_version) == (0, 1)
    assert unchanged.tensors is None  # 304
    assert receipt == {"update_id": receipt["update_id"], "state_version": 0, "round": 0}
    assert replay.value.code == "replayed_nonce" and replay.value.replayed and not replay.value.stale
    assert status["state_version"] == 1
    assert stale.value.stale and stale.value.code == "stale_base"
    expected = reference_step(bank, [(deltas, 10.0)])
    assert after.state_version == 1
    for name, array in after.tensors.items():
        np.testing.assert_allclose(array, expected[name], rtol=1e-6, atol=1e-7)
