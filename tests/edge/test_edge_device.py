"""Device protocol against the in-memory aggregator: what is sent, what is kept, what is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from edge.client import ServerUnreachable
from edge.store import LocalStore
from fedpa.errors import PrivacyBudgetError
from fedpa.payload import decode_tensors
from fedpa.privacy import PrivacyConfig, epsilon_after
from fedpa.protocol import UpdateMeta
from fedpa.wire import UPDATE_META_KEY


def _meta(body: bytes, tmp_path: Path) -> UpdateMeta:
    path = tmp_path / "body.safetensors"
    path.write_bytes(body)
    with safe_open(str(path), framework="numpy") as fh:
        return UpdateMeta.model_validate_json(fh.metadata()[UPDATE_META_KEY])


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file() and p.name != "state.json"}


def test_upload_holds_shared_deltas_only_and_never_the_private_adapter(make_device, fake_server, groups):
    device = make_device(privacy=None)
    private_before = device.private()

    result = device.run_round()
    device.run_round()

    assert result.status == "accepted"
    uploads = [b for b in fake_server.bodies if b.startswith(b"\x00") or UPDATE_META_KEY.encode() in b[:4096]]
    assert len(uploads) == 2
    expected = {t.name for t in device.manifest.shared_state.for_groups(groups)}
    for body in uploads:
        assert set(decode_tensors(body)) == expected  # exactly the gate + its groups' adapters
    private_names = set(private_before)
    private_after = device.private()
    for body in fake_server.bodies:  # every request of the device's life: no private name, no private bytes
        for name in private_names:
            assert name.encode() not in body
        for array in (*private_before.values(), *private_after.values()):
            assert array.tobytes() not in body or array.size == 0
    assert not np.allclose(private_after["layers.0.user.lora_A"], private_before["layers.0.user.lora_A"])


def test_deltas_are_clipped_and_noised_with_declared_privacy(make_device, fake_server, tmp_path):
    privacy = PrivacyConfig(mechanism="gaussian", clip_norm=0.5, noise_multiplier=2.0, delta=1e-5)
    device = make_device(privacy=privacy)

    device.run_round()

    body = fake_server.bodies[-1]
    meta = _meta(body, tmp_path)
    assert meta.privacy.mechanism == "gaussian" and meta.privacy.clip_norm == 0.5
    assert meta.privacy.noise_multiplier == 2.0
    assert meta.privacy.epsilon_spent == pytest.approx(epsilon_after(1, privacy))
    assert device.state.epsilon_spent == pytest.approx(epsilon_after(1, privacy))
    flat = np.concatenate([v.ravel() for v in decode_tensors(body).values()])
    # the clean delta has norm ≤ 0.5 while the noise has std σ·C = 1 per coordinate
    assert flat.std() == pytest.approx(1.0, rel=0.15)


def test_budget_refusal_sends_nothing(make_device, fake_server):
    privacy = PrivacyConfig(noise_multiplier=1.0, epsilon_budget=epsilon_after(2, PrivacyConfig()) + 1e-6)
    device = make_device(privacy=privacy)
    device.run_round()
    device.run_round()
    sent = len(fake_server.bodies)

    with pytest.raises(PrivacyBudgetError, match=r"past this device's budget"):
        device.run_round()

    assert len(fake_server.bodies) == sent  # not even a state download
    assert device.state.uploads_sent == 2 and device.state.rounds_completed == 2


def test_refused_upload_leaves_local_state_intact(make_device, fake_server):
    device = make_device(privacy=None)
    device.run_round()
    device.sync_state()  # the download cache is current, so only the refused round could change files
    before = _files(device.store.root)
    counters = (device.state.rounds_completed, device.state.bytes_up)
    fake_server.refuse_uploads = 422

    result = device.run_round()

    assert result.status == "refused" and "422" in result.detail
    assert _files(device.store.root) == before  # private adapter, log, cached state: byte for byte
    reopened = LocalStore.open(device.store.root)
    assert (reopened.state.rounds_completed, reopened.state.bytes_up) == counters
    assert reopened.state.pending is None and reopened.state.refused == 1


def test_stale_upload_is_retried_next_round_after_a_fresh_download(make_device, fake_server):
    device = make_device(privacy=None)
    train = device.programs.train

    def train_while_the_round_closes(*args, **kwargs):
        fake_server.version += 1  # other devices closed the round while this one trained
        return train(*args, **kwargs)

    device.programs.train = train_while_the_round_closes
    private_before = device.private()
    stale = device.run_round()
    device.programs.train = train
    fresh = device.run_round()

    assert stale.status == "stale" and stale.base_version == 1
    assert fresh.status == "accepted" and fresh.base_version == 2
    assert device.state.rounds_completed == 1 and device.state.refused == 1
    # the stale round's private training was discarded with it: one round of movement, not two
    moved = device.private()["layers.0.user.lora_A"] - private_before["layers.0.user.lora_A"]
    assert np.allclose(moved, 0.01 * 3)


def test_network_failure_keeps_the_upload_and_resends_the_same_bytes(make_device, fake_server):
    device = make_device(privacy=PrivacyConfig(noise_multiplier=1.0))
    fake_server.down = 0
    real_upload = device.client.upload

    def failing_upload(model_id: str, body: bytes) -> dict:
        fake_server.down = 10
        return real_upload(model_id, body)

    device.client.upload = failing_upload
    with pytest.raises(ServerUnreachable):
        device.run_round()
    pending = device.state.pending
    assert pending is not None and device.state.uploads_sent == 1
    staged = device.store.pending_body()

    device.client.upload = real_upload
    fake_server.down = 0
    reopened_device_result = device.run_round()  # resumes: no new training, same bytes

    assert reopened_device_result.status == "accepted"
    assert fake_server.bodies[-1] == staged
    assert device.state.uploads_sent == 1 and device.state.rounds_completed == 1


def test_retry_with_backoff_survives_a_short_outage(make_device, fake_server):
    device = make_device(privacy=None)
    fake_server.down = 2  # fewer than the 3 attempts
    assert device.run_round().status == "accepted"


def test_replayed_nonce_counts_as_accepted(make_device, fake_server):
    device = make_device(privacy=None)
    device.run_round()
    # simulate: the server stored the upload but the answer was lost → the device resends it
    from edge.store import PendingUpload

    body = fake_server.bodies[-1]
    nonce = fake_server.accepted[-1].nonce
    device.store.stage_upload(PendingUpload(nonce=nonce, base_version=1, round=1, example_count=20,
                                            epsilon_after=0.0, created_at=0.0), body, device.private())
    result = device.run_round()
    assert result.status == "accepted" and device.state.pending is None


def test_two_devices_of_one_group_move_the_shared_state(make_device, make_server, groups):
    server = make_server(round_size=2)
    a, b = make_device("a", server=server, privacy=None), make_device("b", server=server, privacy=None)
    before = {k: v.copy() for k, v in server.bank.items()}
    a.run_round()
    b.run_round()
    assert server.version == 2
    changed = {k for k in before if not np.array_equal(before[k], server.bank[k])}
    assert changed == {t.name for t in server.manifest.shared_state.for_groups(groups)}


def test_clipped_norm_is_at_most_c(make_device, fake_server):
    # FakePrograms moves every tensor by 0.01 per batch: a delta of norm ≫ 0.3, which must be clipped
    device = make_device(privacy=PrivacyConfig(mechanism="none", clip_norm=0.3))

    result = device.run_round()

    flat = np.concatenate([v.ravel() for v in decode_tensors(fake_server.bodies[-1]).values()]).astype(np.float64)
    assert result.clip_norm_before > 0.3  # so the clip really acted
    assert np.linalg.norm(flat) == pytest.approx(0.3, rel=1e-5)


@pytest.mark.parametrize(("sigma", "clip"), [(0.5, 1.0), (2.0, 0.25)])
def test_noise_std_is_sigma_times_c_within_sampling_error(make_device, fake_server, sigma, clip):
    from fedpa.manifest import read_manifest

    device = make_device(privacy=PrivacyConfig(clip_norm=clip, noise_multiplier=sigma))
    bodies = []
    for _ in range(8):
        device.run_round()
        bodies.append(fake_server.bodies[-1])

    noise = np.concatenate([np.concatenate([v.ravel() for v in decode_tensors(b).values()]) for b in bodies])
    n = noise.size
    # each upload's clean delta has norm ≤ C, so all 8 of them shift the sample std by at most √(8C²/n)
    bias = np.sqrt(8 * clip**2 / n)
    standard_error = sigma * clip / np.sqrt(2 * n)
    assert abs(noise.std() - sigma * clip) < 4 * standard_error + bias
    assert abs(noise.mean()) < 4 * sigma * clip / np.sqrt(n) + bias
    assert len(read_manifest(device.bundle_dir).shared_state.tensors) > 0


def test_a_new_token_is_persisted_at_once_and_restored_with_its_expiry(make_device, fake_server, tmp_path):
    from edge.client import AggregatorClient, DeviceToken
    from edge.device import Device
    from tests.edge.conftest import FakePrograms

    device = make_device()
    rotated = DeviceToken(device_id=device.state.device_id, token="fpd_rotated", issued_at=1000.0, expires_at=2000.0)
    device.client.on_token(rotated)  # what the client does after a rotation or a re-registration

    reopened = Device(LocalStore.open(device.store.root), AggregatorClient("http://fake"), model_id="tiny",
                      programs=FakePrograms)
    assert reopened.client.token == "fpd_rotated" and reopened.client.identity == rotated
    assert reopened.client.model_id == "tiny"
    assert reopened.client.identity.rotation_due(1750.0) and not reopened.client.identity.rotation_due(1749.0)


def test_a_store_without_token_times_is_never_rotated_but_can_re_register(make_device):
    from edge.client import AggregatorClient
    from edge.device import Device
    from tests.edge.conftest import FakePrograms

    device = make_device()
    device.state.token_issued_at = device.state.token_expires_at = None  # as written before expiries were kept
    device.store.commit()

    reopened = Device(LocalStore.open(device.store.root), AggregatorClient("http://fake"), model_id="tiny",
                      programs=FakePrograms)
    identity = reopened.client.identity
    assert identity is not None and identity.token == device.state.token and identity.expires_at is None
    assert not identity.rotation_due(1e12) and reopened.client.model_id == "tiny"
