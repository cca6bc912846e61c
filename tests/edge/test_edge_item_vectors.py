"""The device's item-vector cache (``item_vectors.safetensors``) is decoded once, not on every ranking,
and is re-read whenever the file changes: new items fetched, another student's vectors, a restart.

Real bundle (ExecuTorch programs), real uvicorn aggregator serving the bundle's item table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.client import AggregatorClient
from edge.device import Device
from edge.items import ItemTableClient
from edge.signals import DeviceSignals, item_vectors_for, learn_item_vectors
from edge.store import LocalStore
from fedpa.errors import ConfigError
from fedpa.manifest import read_manifest
from fedpa.runtime.items import CodeVectors, ItemRows, ItemTableFile
from tests.edge.test_edge_e2e import TRAINING, _device

MODEL_ID = "edge-vectors"
RANKINGS = 5


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every decode of an item-vector cache file (the real decoder, counted)."""
    calls: list[int] = []
    real = CodeVectors.decode.__func__  # type: ignore[attr-defined]

    def counted(cls: type[CodeVectors], body: bytes, **kwargs: object) -> CodeVectors:
        calls.append(len(body))
        return real(cls, body, **kwargs)

    monkeypatch.setattr(CodeVectors, "decode", classmethod(counted))
    return calls


@pytest.fixture(scope="module")
def served(world, sqlite_server) -> ItemTableFile:
    """The world's bundle and its item table, published once for this module; the table as served."""
    if read_manifest(world.bundle).item_vectors is None:
        pytest.skip("the world's bundle embeds item codes itself (no item vectors)")
    world.publish(sqlite_server, MODEL_ID, {"round_size": 1000})
    return ItemTableFile.decode((world.root / f"items-{MODEL_ID}.safetensors").read_bytes())


def _candidates(world, table: ItemTableFile, exclude: set[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of the dataset (signal columns zeroed) whose items' codes are not in ``exclude``."""
    ds = world.ds
    pool = ds.private_test
    codes = table.lookup(ds.item_ids[pool.item]).item_code
    rows = np.flatnonzero(~np.isin(codes, sorted(exclude)))[:n]
    assert len(rows) == n, f"only {len(rows)} rows with new item codes"
    x = pool.x[rows].copy()
    x[:, [j for j, f in enumerate(ds.schema.features) if f.source in ("item_table", "history")]] = 0
    return x, ds.item_ids[pool.item[rows]]


def _restarted(world, sqlite_server, folder: Path) -> tuple[Device, DeviceSignals]:
    """The device of ``folder`` after an app restart: a new store instance and a new Device."""
    store = LocalStore.open(folder)
    device = Device(store, AggregatorClient(sqlite_server.url), model_id=MODEL_ID, training=TRAINING, noise_seed=0)
    signals = DeviceSignals.open(store, world.ds.schema, items=ItemTableClient(
        device.client, MODEL_ID, model_version=device.manifest.model_version))
    return device, signals


def _log_codes(world, table: ItemTableFile) -> set[int]:
    """The item codes ``_device`` looked up for its log (user index 0's train items)."""
    ds = world.ds
    rows = ds.private_train.user == int(ds.private_users[0])
    return set(table.lookup(ds.item_ids[np.unique(ds.private_train.item[rows])]).item_code.tolist())


def _rows_of(codes: np.ndarray, width: int, column: int) -> np.ndarray:
    """Encoded rows whose item-code column holds ``codes`` (all an item-vector lookup reads)."""
    x = np.zeros((len(codes), width), np.int64)
    x[:, column] = codes
    return x


def test_rankings_decode_the_cache_once_after_a_restart(world, sqlite_server, served, tmp_path, decodes) -> None:
    _device(world, sqlite_server, MODEL_ID, tmp_path / "dev")  # looks up its log's items: the cache file
    x, ids = _candidates(world, served, set(), 64)
    decodes.clear()

    device, signals = _restarted(world, sqlite_server, tmp_path / "dev")
    rankings = []
    for _ in range(RANKINGS):
        full = signals.fill(x, ids)
        rankings.append(device.recommend(full, k=10))
    decoded = len(decodes)
    from_file = CodeVectors.decode((tmp_path / "dev" / LocalStore.ITEM_VECTORS).read_bytes())

    spec = device.manifest.item_vectors
    assert decoded == 1  # the restarted store reads the file once; the old code decoded it twice per ranking
    np.testing.assert_array_equal(device.item_vectors(full), from_file.for_codes(full[:, spec.column]))
    for top, logits in rankings[1:]:
        np.testing.assert_array_equal(top, rankings[0][0])
        np.testing.assert_array_equal(logits, rankings[0][1])


def test_new_items_and_rewrites_by_another_instance_are_used(world, sqlite_server, served, tmp_path,
                                                             decodes) -> None:
    _device(world, sqlite_server, MODEL_ID, tmp_path / "dev")
    device, signals = _restarted(world, sqlite_server, tmp_path / "dev")
    spec = device.manifest.item_vectors
    known = _log_codes(world, served)
    x_new, ids_new = _candidates(world, served, known, 16)
    device.item_vectors(device.store.load_log()[0])  # the in-memory copy, of the log's codes only
    decodes.clear()

    full = signals.fill(x_new, ids_new)  # fetches rows of codes the cache had not seen: the file is rewritten
    fetched = device.item_vectors(full)
    other = LocalStore.open(tmp_path / "dev")  # another instance on the folder (a second process) rewrites it
    _, ids_more = _candidates(world, served, known | set(full[:, spec.column].tolist()), 16)
    more_rows = served.lookup(ids_more)
    learn_item_vectors(other, more_rows)
    more = device.item_vectors(_rows_of(more_rows.item_code, full.shape[1], spec.column))

    np.testing.assert_array_equal(fetched, served.lookup(ids_new).vectors())
    np.testing.assert_array_equal(more, more_rows.vectors())
    assert len(decodes) == 2  # the other instance's first read, then this store's re-read of its rewrite


def test_another_students_vectors_are_never_used(world, sqlite_server, served, tmp_path) -> None:
    device = _device(world, sqlite_server, MODEL_ID, tmp_path / "dev")
    spec = device.manifest.item_vectors
    log_x = device.store.load_log()[0]
    ours = device.item_vectors(log_x)  # in memory now
    rows = served.lookup(world.ds.item_ids[np.unique(world.ds.private_train.item)][:32])
    other_digest = "f" * 64
    theirs = ItemRows(rows.meta.model_copy(update={"vector_sha256": other_digest}), rows.item_code, rows.codes,
                      rows.known, (-rows.vector).astype(np.int8), rows.vector_scale)

    with pytest.raises(ConfigError, match="no item vectors of this model's student"):
        item_vectors_for(device.store, log_x, column=spec.column, digest=other_digest)  # a bundle of another student
    learn_item_vectors(device.store, theirs)  # rows of the new student: the cache starts over
    with pytest.raises(ConfigError, match="no item vectors of this model's student"):
        device.item_vectors(log_x)
    restarted = LocalStore.open(tmp_path / "dev")
    with pytest.raises(ConfigError, match="no item vectors of this model's student"):
        item_vectors_for(restarted, log_x, column=spec.column, digest=spec.sha256)
    x_theirs = _rows_of(theirs.item_code, log_x.shape[1], spec.column)
    np.testing.assert_array_equal(item_vectors_for(restarted, x_theirs, column=spec.column, digest=other_digest),
                                  theirs.vectors())
    assert np.isfinite(ours).all()
