"""Fixtures for the edge tests.

Unit tests talk to :class:`FakeAggregator`, an in-memory implementation of docs/api.md behind an
``httpx.MockTransport`` that records every request body, with :class:`FakePrograms` standing in
for the exported programs (the protocol logic does not depend on how the tensors were trained).
End-to-end tests (test_edge_e2e.py) use the real bundle, the ExecuTorch runtime and a real uvicorn
aggregator instead (``world`` and ``sqlite_server``, shared with tests/harness, are in tests/conftest.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from edge.client import AggregatorClient, RetryPolicy
from edge.device import Device, LocalTraining
from edge.store import LocalStore
from fedpa.aggregation import ClientUpdate, aggregate_bank
from fedpa.manifest import FileEntry, Manifest, TensorIO, sha256_file
from fedpa.model import AdapterConfig, Backbone, BackboneConfig, FedPARecommender, ParamGroup
from fedpa.payload import encode_tensors
from fedpa.personalise import read_tensors, shared_state_spec, stored_tensors
from fedpa.protocol import UpdateMeta
from fedpa.wire import (
    MANIFEST_NAME,
    MODEL_VERSION_HEADER,
    SHARED_STATE_FILE,
    STATE_VERSION_HEADER,
    ErrorCode,
    decode_update,
)

torch.set_num_threads(1)

GROUPS = {"age": 1, "region": 2}


def tiny_bundle(folder: Path) -> Manifest:
    """A manifest + shared state + private init of a tiny FedPA model (no programs)."""
    torch.manual_seed(0)
    backbone = Backbone(BackboneConfig(cardinalities=(3, 4, 5), n_user_features=2, embedding_dim=4, hidden=(8, 4)))
    model = FedPARecommender(backbone, AdapterConfig(group_attributes=("age", "region"), group_cardinalities=(3, 4)))
    folder.mkdir(parents=True, exist_ok=True)
    spec = shared_state_spec(model, seed=1)
    save_file(stored_tensors(model, spec), str(folder / "shared_state.safetensors"))
    private = read_tensors(model, ParamGroup.PRIVATE)
    save_file(private, str(folder / "private_init.safetensors"))
    files = {n: FileEntry(sha256=sha256_file(folder / n), size=(folder / n).stat().st_size)
             for n in ("shared_state.safetensors", "private_init.safetensors")}
    manifest = Manifest(
        model_id="tiny", model_version=1, created_at="2024-01-01T00:00:00Z",
        feature_schema={"features": [], "group_attributes": ["age", "region"]},
        backbone=backbone.config.to_dict(), adapter=model.config.to_dict(),
        shared_state=spec,
        private_tensors=tuple(TensorIO(name=k, shape=v.shape, dtype="float32", group="private")
                              for k, v in private.items()),
        files=files,
    )
    (folder / "manifest.json").write_text(manifest.to_json())
    return manifest


class FakePrograms:
    """Stands in for the exported programs: "training" moves every tensor by a fixed step."""

    def __init__(self, folder: Path, *, step: float = 0.01) -> None:
        from fedpa.manifest import read_manifest

        self.manifest = read_manifest(folder)
        self.folder = folder
        self.step = step
        self.calls = 0

    def private_init(self) -> dict[str, np.ndarray]:
        from safetensors.numpy import load_file

        return dict(load_file(self.folder / "private_init.safetensors"))

    def train(self, tensors: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
              batches: list[np.ndarray], *, lr: float, item_vector: np.ndarray | None = None
              ) -> tuple[dict[str, np.ndarray], float, int]:
        assert item_vector is None  # the tiny bundle's manifest has no item_vectors
        self.calls += 1
        return {k: (v + self.step * len(batches)).astype(np.float32) for k, v in tensors.items()}, 0.5, 0

    def score(self, x: np.ndarray, personalisation: Mapping[str, np.ndarray], *, backend: str = "pte",
              item_vector: np.ndarray | None = None) -> np.ndarray:
        assert item_vector is None
        return np.asarray(x, np.float32).sum(axis=1)


@dataclass
class FakeAggregator:
    """docs/api.md in memory: registration, bundle files, state, uploads (sync rounds of ``round_size``)."""

    bundle: Path
    round_size: int = 1
    down: int = 0  # fail this many next requests with a connection error
    refuse_uploads: int | None = None  # answer uploads with this 4xx status
    bodies: list[bytes] = field(default_factory=list)  # every request body, in order
    updates: list[ClientUpdate] = field(default_factory=list)
    accepted: list[UpdateMeta] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    version: int = 1
    state_queries: list[str] = field(default_factory=list)  # the ?groups= of every state download

    def __post_init__(self) -> None:
        from safetensors.numpy import load_file

        from fedpa.manifest import read_manifest

        self.manifest = read_manifest(self.bundle)
        self.bank = self.manifest.shared_state.initial_bank(load_file(self.bundle / SHARED_STATE_FILE))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _error(self, status: int, code: ErrorCode, detail: str) -> httpx.Response:
        return httpx.Response(status, json={"error": code, "detail": detail})

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        if self.down > 0:
            self.down -= 1
            raise httpx.ConnectError("server down", request=request)
        path, method = request.url.path, request.method
        if method == "POST" and path == "/v1/devices":
            return httpx.Response(201, json={"device_id": secrets.token_hex(4), "token": secrets.token_hex(8),
                                             "model_id": "tiny"})
        if method == "GET" and path == "/v1/models/tiny":  # byte for byte, as the real server serves it
            return httpx.Response(200, content=(self.bundle / MANIFEST_NAME).read_bytes(),
                                  headers={MODEL_VERSION_HEADER: str(self.manifest.model_version),
                                           "Content-Type": "application/json"})
        if method == "GET" and path.startswith("/v1/models/tiny/files/"):
            file = self.bundle / path.rsplit("/", 1)[1]
            if not file.is_file():
                return self._error(404, ErrorCode.UNKNOWN_FILE, path)
            return httpx.Response(200, content=file.read_bytes())
        if method == "GET" and path == "/v1/models/tiny/state":
            groups = dict(kv.split(":") for kv in request.url.params["groups"].split(","))
            self.state_queries.append(request.url.params["groups"])
            spec = self.manifest.shared_state
            wanted = {t.name for t in spec.tensors
                      if t.role == "gate" or groups[t.attribute] in ("*", str(t.value))}
            return httpx.Response(200, content=encode_tensors({k: v for k, v in self.bank.items() if k in wanted}),
                                  headers={STATE_VERSION_HEADER: str(self.version), MODEL_VERSION_HEADER: "1",
                                           "ETag": f'"{self.version}"'})
        if method == "GET" and path == "/v1/models/tiny/status":
            return httpx.Response(200, json={"state_version": self.version, "pending_updates": len(self.updates)})
        if method == "POST" and path == "/v1/models/tiny/updates":
            return self._upload(request.content)
        return self._error(404, ErrorCode.NOT_FOUND, path)

    def _upload(self, body: bytes) -> httpx.Response:

        meta, tensors = decode_update(body)
        if meta.nonce in self.nonces:
            return self._error(409, ErrorCode.REPLAYED_NONCE, f"nonce {meta.nonce} was already used")
        if self.refuse_uploads is not None:
            return self._error(self.refuse_uploads, ErrorCode.INVALID_PAYLOAD, "refused by the test")
        if meta.base_version != self.version:
            return self._error(409, ErrorCode.STALE_BASE, f"base {meta.base_version} != {self.version}")
        self.manifest.shared_state.validate(tensors, groups=meta.groups)
        self.nonces.add(meta.nonce)
        self.accepted.append(meta)
        self.updates.append(ClientUpdate(tensors, weight=meta.example_count))
        if len(self.updates) >= self.round_size:
            self.bank, _ = aggregate_bank(self.bank, self.updates, self.manifest.shared_state)
            self.updates.clear()
            self.version += 1
        return httpx.Response(202, json={"update_id": len(self.accepted), "state_version": self.version,
                                         "round": self.version})


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle-src"
    tiny_bundle(folder)
    return folder


@pytest.fixture
def groups() -> dict[str, int]:
    return dict(GROUPS)


@pytest.fixture
def make_server(tiny: Path) -> Callable[..., FakeAggregator]:
    return lambda **kwargs: FakeAggregator(tiny, **kwargs)


@pytest.fixture
def fake_server(make_server: Callable[..., FakeAggregator]) -> FakeAggregator:
    return make_server()


@pytest.fixture
def make_device(tmp_path: Path, fake_server: FakeAggregator) -> Callable[..., Device]:
    """A device on the fake server with a 20-row log, set up (registered, bundle downloaded)."""

    def make(name: str = "dev", *, server: FakeAggregator | None = None, **kwargs: Any) -> Device:
        server = server or fake_server
        store = LocalStore.open(tmp_path / name)
        rng = np.random.default_rng(0)
        store.save_log(rng.integers(0, 3, size=(20, 3)), rng.integers(0, 2, size=20))
        http = httpx.Client(transport=server.transport())
        client = AggregatorClient("http://fake", http=http, retry=RetryPolicy(attempts=3, base_delay=0.0),
                                  sleep=lambda s: None)
        kwargs.setdefault("training", LocalTraining(batch_size=8, epochs=1))
        kwargs.setdefault("noise_seed", 1)
        device = Device(store, client, model_id="tiny", programs=FakePrograms, **kwargs)
        device.setup(groups=GROUPS, user=name)
        return device

    return make


# ----------------------------------------------------------------------------- end-to-end world
