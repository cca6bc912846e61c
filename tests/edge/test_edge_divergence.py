"""A local run that diverges on a noisy shared state is discarded by the device (edge/device.py).

The mechanism behind the demo's occasional collapse: under LDP every upload carries N(0, (σC)²)
noise, so the server's group means random-walk by σC/√(group size) per round; local SGD at lr 1.0
started from such a state can blow up (loss ~1e13, non-finite steps). Here the real training
program (ExecuTorch) of the session's bundle starts from the bundle's shared state plus seeded
Gaussian noise of that size, served by the in-memory aggregator so the exact upload can be read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from edge.client import AggregatorClient, RetryPolicy
from edge.device import Device
from edge.programs import LocalPrograms
from edge.signals import learn_item_vectors
from edge.store import LocalStore
from fedpa.manifest import read_manifest
from fedpa.privacy import PrivacyConfig
from fedpa.runtime.items import ItemTableFile
from fedpa.schedule import DIVERGED_LOSS, LocalTraining
from fedpa.wire import decode_update
from tests.edge.conftest import FakeAggregator

USER = 1  # a private user whose 5 local epochs at lr 1.0 blow up from the noisy state below (seeded)
NOISE = 3.0  # std of the noise added to every shared tensor: a few rounds of σC/√n at small groups


def _server(world, tmp_path: Path, *, noise: float) -> FakeAggregator:
    """The session's bundle renamed to the fake server's model id, its shared state plus seeded noise."""
    dest = tmp_path / "bundle"
    shutil.copytree(world.bundle, dest)
    manifest = read_manifest(dest).model_copy(update={"model_id": "tiny"})
    (dest / "manifest.json").write_text(manifest.to_json())
    server = FakeAggregator(dest)
    rng = np.random.default_rng(0)
    server.bank = {k: (v + rng.normal(0.0, noise, v.shape)).astype(np.float32) for k, v in sorted(server.bank.items())}
    return server


def _learn_item_vectors(world, server: FakeAggregator, store: LocalStore, rows: np.ndarray) -> None:
    """The log's item vectors in the device's cache, as a lookup on the item table would leave them."""
    if read_manifest(server.bundle).item_vectors is None:
        return
    from export.items import student_item_vectors, write_item_table

    table = write_item_table(server.bundle, world.ds, store.root.parent / "items.safetensors", table_version=1,
                             overwrite=True, code_vectors=student_item_vectors(world.student, server.bundle))
    served = ItemTableFile.decode(table.path.read_bytes())
    learn_item_vectors(store, served.lookup(world.ds.item_ids[np.unique(world.ds.private_train.item[rows])]))


def _device(world, server: FakeAggregator, folder: Path, **kwargs) -> Device:
    ds = world.ds
    user = int(ds.private_users[USER])
    rows = ds.private_train.user == user
    store = LocalStore.open(folder)
    store.save_log(ds.private_train.x[rows], ds.private_train.y[rows], ds.private_train.ts[rows])
    _learn_item_vectors(world, server, store, rows)
    client = AggregatorClient("http://fake", http=httpx.Client(transport=server.transport()),
                              retry=RetryPolicy(attempts=1), sleep=lambda s: None)
    device = Device(store, client, model_id="tiny", programs=LocalPrograms.open, noise_seed=0,
                    training=LocalTraining(epochs=5, batch_size=32, lr=1.0), **kwargs)  # the device defaults
    groups = {a: int(v) for a, v in zip(ds.schema.group_attributes, ds.user_groups[user], strict=True)}
    device.setup(groups=groups, user=str(user))
    return device


def _uploaded(server: FakeAggregator) -> dict[str, np.ndarray]:
    return decode_update(server.bodies[-1])[1]


def test_lr_1_from_a_noisy_shared_state_diverges_and_the_device_keeps_its_adapters(world, tmp_path):
    server = _server(world, tmp_path, noise=NOISE)
    device = _device(world, server, tmp_path / "dev")
    private_before = device.private()

    result = device.run_round()

    # the mechanism: the local run from the noisy state left the stable region of SGD at lr 1.0
    assert result.skipped_steps > 0 or not result.loss <= DIVERGED_LOSS
    assert result.discarded
    # the guard: the upload went through as a zero change, the private adapter is the one from before
    assert result.status == "accepted" and device.state.rounds_completed == 1
    upload = _uploaded(server)
    assert upload and all(not np.any(a) for a in upload.values())
    after = device.private()
    assert all(np.array_equal(after[k], v) for k, v in private_before.items())


def test_under_ldp_a_discarded_run_sends_noise_only_and_is_charged_like_any_upload(world, tmp_path):
    server = _server(world, tmp_path, noise=NOISE)
    privacy = PrivacyConfig(clip_norm=0.5, noise_multiplier=2.0)
    device = _device(world, server, tmp_path / "dev", privacy=privacy)

    result = device.run_round()

    assert result.discarded and result.clip_norm_before == 0.0  # nothing learned went into the upload
    noise = np.concatenate([a.ravel() for a in _uploaded(server).values()])
    assert np.std(noise) == pytest.approx(privacy.noise_multiplier * privacy.clip_norm, rel=0.1)
    assert result.epsilon > 0 and device.state.epsilon_spent == result.epsilon  # indistinguishable, so charged


def test_the_same_device_on_the_clean_shared_state_trains_and_uploads_its_change(world, tmp_path):
    server = _server(world, tmp_path, noise=0.0)
    device = _device(world, server, tmp_path / "dev")
    private_before = device.private()

    result = device.run_round()

    assert not result.discarded and result.skipped_steps == 0 and result.loss < 1.0
    assert any(np.any(a) for a in _uploaded(server).values())
    after = device.private()
    assert any(not np.array_equal(after[k], v) for k, v in private_before.items())
