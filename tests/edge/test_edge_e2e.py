"""End to end: devices running the exported programs, talking HTTP to a real uvicorn aggregator.

Whole simulated fleets (:mod:`harness.fleet`) are tested in tests/harness/test_fleet.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge.client import AggregatorClient, RetryPolicy, ServerUnreachable
from edge.device import Device, LocalTraining
from edge.store import LocalStore
from fedpa.errors import PrivacyBudgetError
from fedpa.manifest import PrivacySettings, read_manifest
from fedpa.privacy import PrivacyConfig, epsilon_after
from harness.server_process import AggregatorProcess

TRAINING = LocalTraining(lr=1.0, epochs=5, batch_size=32)


def _device(world, server, model_id: str, folder: Path, *, user_index: int = 0, **kwargs) -> Device:
    """One device for a private user of the world's dataset, set up against ``server``."""
    ds = world.ds
    user = int(ds.private_users[user_index])
    store = LocalStore.open(folder)
    rows = ds.private_train.user == user
    store.save_log(ds.private_train.x[rows], ds.private_train.y[rows], ds.private_train.ts[rows])
    client = AggregatorClient(server.url, retry=kwargs.pop("retry", RetryPolicy(attempts=3, base_delay=0.05)))
    device = Device(store, client, model_id=model_id, training=kwargs.pop("training", TRAINING), noise_seed=0,
                    **kwargs)
    groups = {a: int(v) for a, v in zip(ds.schema.group_attributes, ds.user_groups[user], strict=True)}
    device.setup(groups=groups, user=str(user))
    if device.manifest.item_vectors is not None:  # the log's item vectors, from the table world.publish served
        from edge.items import ItemTableClient
        from edge.signals import DeviceSignals

        items = ItemTableClient(client, model_id, model_version=device.manifest.model_version)
        DeviceSignals(store, ds.schema, items=items).learn_vectors(ds.item_ids[np.unique(ds.private_train.item[rows])])
    return device


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file() and p.name != "state.json"}


_CRASHING_DEVICE = """
import sys, time
from pathlib import Path
from edge.client import AggregatorClient
from edge.device import Device, LocalTraining
from edge.store import LocalStore
from fedpa.privacy import PrivacyConfig
root, url, model_id, where, marker = sys.argv[1:]
device = Device(LocalStore.open(root), AggregatorClient(url), model_id=model_id,
                training=LocalTraining(lr=1.0, epochs=5), noise_seed=0,
                privacy=PrivacyConfig(clip_norm=0.5, noise_multiplier=1.0))
target = device.programs if where == "train" else device.client
real = getattr(target, where if where == "train" else "upload")
def hang(*args, **kwargs):
    out = real(*args, **kwargs) if where == "train" else None  # really train, then hang
    Path(marker).touch()
    time.sleep(120)
    return out
setattr(target, "train" if where == "train" else "upload", hang)
device.run_round()
"""


@pytest.mark.parametrize("where", ["train", "upload"])
def test_device_killed_mid_round_restarts_cleanly(world, sqlite_server, tmp_path, where):
    model_id = f"crash-{where}"
    world.publish(sqlite_server, model_id, {"round_size": 1, "min_reporters": 1, "enforce_privacy": False})
    privacy = PrivacyConfig(clip_norm=0.5, noise_multiplier=1.0)
    device = _device(world, sqlite_server, model_id, tmp_path / "dev", privacy=privacy)
    private_before = device.private()
    script = tmp_path / "device.py"
    script.write_text(_CRASHING_DEVICE)
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "dev"), sqlite_server.url, model_id,
                             where, str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert marker.exists(), "the device never reached the crash point"
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs, as when the OS reclaims an app
        proc.wait()

    store = LocalStore.open(tmp_path / "dev")  # must open cleanly whatever was half-written
    if where == "train":  # killed before anything was staged: nothing charged, private adapter untouched
        assert store.state.pending is None and store.state.uploads_sent == 0
        assert all(np.array_equal(v, private_before[k]) for k, v in store.load_private().items())
    else:  # killed mid-upload: the noised update and its ε were staged, and will be resent as they are
        assert store.state.pending is not None and store.state.uploads_sent == 1
        staged = store.pending_body()
    restarted = _device(world, sqlite_server, model_id, tmp_path / "dev", privacy=privacy)
    result = restarted.run_round()

    assert result.status == "accepted"
    assert restarted.state.rounds_completed == 1 and restarted.state.uploads_sent == 1
    assert restarted.state.epsilon_spent == pytest.approx(epsilon_after(1, privacy))
    with AggregatorClient(sqlite_server.url, token=sqlite_server.admin_token) as admin:
        assert admin.status(model_id)["accepted_total"] == 1
    if where == "upload":
        assert restarted.state.history[-1]["bytes"] == len(staged)


def test_server_down_then_up_resumes_the_pending_upload(world, tmp_path):
    server = AggregatorProcess(database_url=f"sqlite:///{tmp_path / 'agg.db'}", log_file=tmp_path / "agg.log")
    with server:
        world.publish(server, "outage", {"round_size": 1, "min_reporters": 1, "enforce_privacy": False})
        device = _device(world, server, "outage", tmp_path / "dev", privacy=None)
        real = device.programs.train

        def train_then_lose_the_server(*args, **kwargs):
            out = real(*args, **kwargs)
            server.stop()
            return out

        device.programs.train = train_then_lose_the_server
        with pytest.raises(ServerUnreachable):
            device.run_round()
        device.programs.train = real
        assert device.state.pending is not None and device.state.rounds_completed == 0
        with pytest.raises(ServerUnreachable):  # still down: the same upload stays pending
            device.run_round()
        server.start()  # same port, same database
        result = device.run_round()
        status = AggregatorClient(server.url, token=server.admin_token).status("outage")
    assert result.status == "accepted" and device.state.pending is None
    assert device.state.rounds_completed == 1 and status["accepted_total"] == 1


def test_refusal_and_budget_against_the_real_server(world, sqlite_server, tmp_path):
    world.publish(sqlite_server, "strict", {"round_size": 1, "min_reporters": 1, "enforce_privacy": True},
                  privacy=PrivacySettings(clip_norm=0.5, noise_multiplier=2.0))
    weak = _device(world, sqlite_server, "strict", tmp_path / "weak",
                   privacy=PrivacyConfig(clip_norm=0.5, noise_multiplier=1.0))
    weak.sync_state()
    before = _files(weak.store.root)

    refused = weak.run_round()

    assert refused.status == "refused" and "privacy_below_floor" in refused.detail
    assert _files(weak.store.root) == before and weak.state.rounds_completed == 0

    strict = PrivacyConfig(clip_norm=0.5, noise_multiplier=2.0,
                           epsilon_budget=epsilon_after(1, PrivacyConfig(noise_multiplier=2.0)) * 1.01)
    device = _device(world, sqlite_server, "strict", tmp_path / "ok", privacy=strict, user_index=1)
    assert device.run_round().status == "accepted"
    with pytest.raises(PrivacyBudgetError):
        device.run_round()
    with AggregatorClient(sqlite_server.url, token=sqlite_server.admin_token) as admin:
        assert admin.status("strict")["accepted_total"] == 1


def test_a_newer_model_version_is_picked_up_after_a_409(world, sqlite_server, tmp_path):
    world.publish(sqlite_server, "versions", {"round_size": 1, "min_reporters": 1, "enforce_privacy": False})
    device = _device(world, sqlite_server, "versions", tmp_path / "dev", privacy=None)
    assert device.run_round().status == "accepted"
    real = device.programs.train

    def publish_v2_meanwhile(*args, **kwargs):
        out = real(*args, **kwargs)
        bundle = world.root / "bundle-versions"

        manifest = read_manifest(bundle).model_copy(update={"model_version": 2})
        (bundle / "manifest.json").write_text(manifest.to_json())
        with AggregatorClient(sqlite_server.url, token=sqlite_server.admin_token) as admin:
            admin.publish(bundle, config={"round_size": 1, "min_reporters": 1, "enforce_privacy": False})
        return out

    device.programs.train = publish_v2_meanwhile
    refused = device.run_round()
    after = device.run_round()

    assert refused.status == "stale" and "model_version" in refused.detail
    assert after.status == "accepted" and device.state.model_version == 2


def test_full_features_served_and_filled_end_to_end(world, sqlite_server, tmp_path) -> None:
    """Item table published beside the bundle; a device's candidates get the served rows and its own
    history through FeatureEncoder.fill, and the exported programs rank them (pte = onnx)."""
    from edge.items import ItemTableClient
    from edge.signals import DeviceSignals
    from fedpa.runtime.items import item_table_features
    from fedpa.signals import HistoryState, build_item_table

    ds = world.ds
    if not item_table_features(ds.schema):
        pytest.skip("the world's dataset has no item_table features")
    world.publish(sqlite_server, "edge-full", {"round_size": 1000})  # and its item table
    device = _device(world, sqlite_server, "edge-full", tmp_path / "dev")
    user = int(ds.private_users[0])
    test = ds.private_val.select(ds.private_val.user == user)  # val rows' history: the train rows, as in the log
    base = test.x.copy()
    encoder_positions = [j for j, f in enumerate(ds.schema.features) if f.source in ("item_table", "history")]
    base[:, encoder_positions] = 0
    signals = DeviceSignals.open(device.store, ds.schema,
                                 items=ItemTableClient(device.client, "edge-full", model_version=1))

    full = signals.fill(base, ds.item_ids[test.item])
    logits = device.score(full)
    device.backend = "onnx"
    logits_onnx = device.score(full)

    reference = build_item_table(ds.schema, ds.signal_log, item_ids=ds.item_ids, item_codes=ds.item_codes)
    table_cols = [j for j, f in enumerate(ds.schema.features) if f.source == "item_table"]
    np.testing.assert_array_equal(full[:, table_cols],
                                  reference.candidate_codes(ds.item_ids[test.item], ds.user_groups[user]))
    history = HistoryState.for_schema(ds.schema)
    log = device.store.load_log()
    history.observe(log[0], log[1])
    hist_cols = [j for j, f in enumerate(ds.schema.features) if f.source == "history"]
    np.testing.assert_array_equal(full[:, hist_cols], history.codes(full))
    np.testing.assert_array_equal(full[:, hist_cols], test.x[:, hist_cols])  # = the pipeline's split-start rule
    assert np.isfinite(logits).all() and len(logits) == len(test.y)
    np.testing.assert_allclose(logits, logits_onnx, atol=1e-4)
