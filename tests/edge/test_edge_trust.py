"""The device decides its privacy: pinned publisher key, no downgrades, its own floor and ledger."""

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from edge.client import AggregatorClient, RetryPolicy
from edge.device import Device, LocalTraining
from edge.store import LocalStore
from fedpa.errors import BundleError, PrivacyBudgetError, PrivacyPolicyError, SignatureError
from fedpa.manifest import read_manifest
from fedpa.privacy import DevicePolicy, PrivacyConfig, epsilon_after
from fedpa.signing import generate_keypair, load_private_key, load_public_key, sign_bundle
from tests.edge.conftest import GROUPS, FakeAggregator, FakePrograms


@pytest.fixture
def keys(tmp_path):
    key, pub = generate_keypair(tmp_path / "keys")
    return load_private_key(key), load_public_key(pub)


def republish(bundle: Path, key, **update) -> None:
    """Rewrite the bundle's manifest (e.g. a new version or privacy settings) and sign it with ``key``."""
    manifest = read_manifest(bundle)
    fields = {k: v for k, v in update.items() if k != "privacy"}
    if "privacy" in update:
        fields["privacy"] = manifest.privacy.model_copy(update=update["privacy"])
    (bundle / "manifest.json").write_text(manifest.model_copy(update=fields).to_json())
    if key is not None:
        sign_bundle(bundle, key)


def device_on(server: FakeAggregator, folder: Path, **kwargs) -> Device:
    store = LocalStore.open(folder)
    rng = np.random.default_rng(0)
    if store.load_log() is None:
        store.save_log(rng.integers(0, 3, size=(20, 3)), rng.integers(0, 2, size=20))
    server.manifest = read_manifest(server.bundle)
    client = AggregatorClient("http://fake", http=httpx.Client(transport=server.transport()),
                              retry=RetryPolicy(attempts=2, base_delay=0.0), sleep=lambda s: None)
    return Device(store, client, model_id="tiny", programs=FakePrograms, training=LocalTraining(batch_size=8),
                  noise_seed=1, **kwargs)


def test_signed_bundle_installs_and_its_signature_is_kept(tiny, keys, tmp_path):
    republish(tiny, keys[0], privacy={"noise_multiplier": 7.0})
    device = device_on(FakeAggregator(tiny), tmp_path / "dev", trust_key=keys[1], policy=DevicePolicy())
    device.setup(groups=GROUPS)
    assert (device.bundle_dir / "manifest.sig").read_bytes() == (tiny / "manifest.sig").read_bytes()
    assert (device.bundle_dir / "manifest.json").read_bytes() == (tiny / "manifest.json").read_bytes()


@pytest.mark.parametrize("attack", ["unsigned", "tampered", "resigned"])
def test_unsigned_tampered_and_resigned_bundles_are_refused(tiny, keys, tmp_path, attack):
    republish(tiny, keys[0], privacy={"noise_multiplier": 7.0})
    if attack == "unsigned":
        (tiny / "manifest.sig").unlink()
    elif attack == "tampered":  # a server lowers σ and leaves the publisher's signature in place
        republish(tiny, None, privacy={"noise_multiplier": 0.001})
    else:  # … or re-signs with a key of its own
        other, _ = generate_keypair(tmp_path / "other")
        republish(tiny, load_private_key(other), privacy={"noise_multiplier": 0.001})
    device = device_on(FakeAggregator(tiny), tmp_path / "dev", trust_key=keys[1], policy=DevicePolicy())
    with pytest.raises(SignatureError):
        device.setup(groups=GROUPS)
    assert not device.bundle_dir.exists() and not (device.store.root / "bundle.incoming").exists()
    assert device.state.model_version is None


def test_downgrade_to_an_older_model_version_is_refused(tiny, keys, tmp_path):
    republish(tiny, keys[0], model_version=2, privacy={"noise_multiplier": 7.0})
    server = FakeAggregator(tiny)
    device = device_on(server, tmp_path / "dev", trust_key=keys[1], policy=DevicePolicy())
    device.setup(groups=GROUPS)
    assert device.state.model_version == 2
    republish(tiny, keys[0], model_version=1)  # an old, genuinely signed bundle replayed
    server.manifest = read_manifest(tiny)
    with pytest.raises(BundleError, match="refusing the downgrade"):
        device.setup()
    assert read_manifest(device.bundle_dir).model_version == 2 and device.state.model_version == 2


def test_manifest_below_the_device_floor_is_refused(tiny, keys, tmp_path):
    republish(tiny, keys[0], privacy={"noise_multiplier": 1.0, "rounds": 30})  # ε ≈ 137 over 30 rounds
    device = device_on(FakeAggregator(tiny), tmp_path / "dev", trust_key=keys[1], policy=DevicePolicy())
    with pytest.raises(PrivacyPolicyError, match=r"σ=1 is below this device's floor σ ≥ 6\.98"):
        device.setup(groups=GROUPS)
    assert not device.bundle_dir.exists()


def test_budget_survives_reinstall_and_restart(tiny, keys, tmp_path):
    republish(tiny, keys[0], privacy={"noise_multiplier": 7.0})
    server = FakeAggregator(tiny)
    privacy = PrivacyConfig(noise_multiplier=7.0, clip_norm=0.5)
    budget = epsilon_after(2, privacy) + 1e-6  # room for exactly two uploads
    policy = DevicePolicy(epsilon_budget=budget, min_noise_multiplier=5.0)
    device = device_on(server, tmp_path / "dev", trust_key=keys[1], policy=policy, privacy=privacy)
    device.setup(groups=GROUPS)
    assert [device.run_round().status for _ in range(2)] == ["accepted", "accepted"]
    with pytest.raises(PrivacyBudgetError, match="upload #3"):
        device.run_round()

    republish(tiny, keys[0], model_version=2)  # a new model: a new bundle, a new private adapter
    server.manifest = read_manifest(tiny)
    device.setup()
    assert device.state.model_version == 2
    with pytest.raises(PrivacyBudgetError, match="upload #3"):
        device.run_round()

    restarted = device_on(server, tmp_path / "dev", trust_key=keys[1], policy=policy, privacy=privacy)
    sent = len(server.bodies)
    with pytest.raises(PrivacyBudgetError, match=r"ε from \d+\.\d+ to"):
        restarted.run_round()
    assert len(server.bodies) == sent  # nothing trained, nothing sent
    ledger = json.loads((tmp_path / "dev" / "state.json").read_text())["ledger"]
    assert ledger == [{"mechanism": "gaussian", "noise_multiplier": 7.0, "clip_norm": 0.5}] * 2


def test_accountant_composes_what_was_sent_not_todays_sigma(make_device):
    device = make_device(privacy=PrivacyConfig(noise_multiplier=0.5))
    for _ in range(4):
        device.run_round()
    device.privacy = PrivacyConfig(noise_multiplier=5.0)
    result = device.run_round()
    assert result.epsilon == pytest.approx(68.75, abs=0.01)  # not epsilon_after(5, σ=5) ≈ 4.6


def test_downloads_name_no_group_and_uploads_no_exact_count(make_device, fake_server):
    device = make_device(privacy=PrivacyConfig(noise_multiplier=2.0))
    device.run_round()
    assert fake_server.state_queries and set(fake_server.state_queries) == {"age:*,region:*"}
    assert fake_server.accepted[-1].example_count == 1  # the device has 20 interactions
    assert set(device.store.load_shared()[0]) == {t.name for t in device.manifest.shared_state.for_groups(GROUPS)}
