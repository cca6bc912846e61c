"""Hand-made bundle, updates and an independent numpy reference for the aggregator tests.

Deliberately independent of the export pipeline: a tiny SharedStateSpec (two gate tensors, two
grouping attributes) and bundle files with real sha256, written into a temp dir.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import numpy as np

from aggregator.core.config import Settings
from aggregator.schemas import RoundConfig
from fedpa.manifest import FileEntry, Manifest, PrivacySettings
from fedpa.payload import encode_tensors
from fedpa.protocol import UpdateMeta, UpdatePrivacy
from fedpa.state import InitialBank, SharedStateSpec
from fedpa.wire import UPDATE_META_KEY
from harness.server_process import AggregatorProcess

MODEL_ID = "tiny"
ADMIN_TOKEN = "admin-" + "x" * 40
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PRIVACY = PrivacySettings(mechanism="gaussian", clip_norm=1.0, noise_multiplier=0.5, delta=1e-5)
DECLARED = UpdatePrivacy(mechanism="gaussian", clip_norm=1.0, noise_multiplier=0.5, epsilon_spent=1.5, delta=1e-5)

SPEC = SharedStateSpec.build(
    gate=[("layers.0.gate.w1", (4, 3)), ("layers.0.gate.b1", (3,))],
    group=[("layers.0.groups.age.lora_A", "age", (2, 4)), ("layers.0.groups.region.lora_A", "region", (2, 4))],
    cardinalities={"age": 3, "region": 2},
)
# the bundle's law: w1 and the adapters' A drawn from the seed, b1 stored (bounds are float32 values)
DRAWN = {"layers.0.gate.w1": 0.5, "layers.0.groups.age.lora_A": 0.75, "layers.0.groups.region.lora_A": 0.75}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_spec(seed: int) -> SharedStateSpec:
    """SPEC with the initial law of a bundle built with ``seed``."""
    return SharedStateSpec(tensors=SPEC.tensors, initial=InitialBank(seed=seed, drawn=DRAWN))


def write_bundle(root: Path, *, model_id: str = MODEL_ID, model_version: int = 1, seed: int = 0,
                 privacy: PrivacySettings = PRIVACY) -> dict[str, np.ndarray]:
    """A verifiable bundle dir (manifest + stored shared state + a stand-in program); returns the initial bank."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    spec = bundle_spec(seed)
    stored = {name: rng.normal(size=spec.by_name()[name].shape).astype(np.float32) for name in spec.stored_names}
    bank = spec.initial_bank(stored)
    blobs = {"shared_state.safetensors": encode_tensors(stored),
             "inference.onnx": b"stand-in program bytes " + bytes([seed % 256]) * 64}
    files = {}
    for name, data in blobs.items():
        (root / name).write_bytes(data)
        files[name] = FileEntry(sha256=sha256(data), size=len(data))
    manifest = Manifest(model_id=model_id, model_version=model_version, created_at="2026-01-01T00:00:00Z",
                        feature_schema={}, backbone={}, adapter={}, shared_state=spec, private_tensors=(),
                        privacy=privacy, files=files)
    (root / "manifest.json").write_text(manifest.to_json())
    return bank


def bundle_multipart(root: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    names = ["manifest.json", "shared_state.safetensors", "inference.onnx"]
    return [("files", (n, (root / n).read_bytes(), "application/octet-stream")) for n in names]


def make_update(groups: Mapping[str, int], *, seed: int, base_version: int = 0, model_version: int = 1,
                example_count: int = 10, nonce: str | None = None, model_id: str = MODEL_ID,
                privacy: UpdatePrivacy = DECLARED, arrays: Mapping[str, np.ndarray] | None = None,
                meta_override: Mapping[str, object] | None = None) -> tuple[bytes, dict[str, np.ndarray]]:
    """(safetensors body with fedpa.update metadata, the deltas) for one device."""
    rng = np.random.default_rng(seed)
    deltas = dict(arrays) if arrays is not None else {
        t.name: (0.1 * rng.normal(size=t.shape)).astype(np.float32) for t in SPEC.for_groups(groups)}
    meta = UpdateMeta(model_id=model_id, model_version=model_version, base_version=base_version,
                      groups=dict(groups), example_count=example_count, nonce=nonce or secrets.token_hex(12),
                      privacy=privacy)
    meta_json = meta.model_dump_json()
    if meta_override:
        meta_json = json.dumps({**json.loads(meta_json), **meta_override})
    return encode_tensors(deltas, metadata={UPDATE_META_KEY: meta_json}), deltas


def reference_step(bank: Mapping[str, np.ndarray], updates: Sequence[tuple[Mapping[str, np.ndarray], float]], *,
                   server_lr: float = 1.0, min_reporters: int = 1,
                   staleness: Sequence[int] | None = None, exponent: float = 0.0) -> dict[str, np.ndarray]:
    """Independent numpy reference of docs/design.md §3's weighted mean: per tensor, over the clients that sent it."""
    out = {k: v.copy() for k, v in bank.items()}
    stale = staleness or [0] * len(updates)
    for t in SPEC.tensors:
        rows = [(d[t.name].astype(np.float64), w * (1 + s) ** -exponent)
                for (d, w), s in zip(updates, stale, strict=True) if t.name in d]
        if not rows or (t.role == "group" and len(rows) < min_reporters):
            continue
        total = sum(w for _, w in rows)
        mean = sum(d * (w / total) for d, w in rows)
        out[t.name] = (bank[t.name] + server_lr * mean).astype(np.float32)
    return out


def publish(client: httpx.Client, root: Path, config: dict | None = None) -> httpx.Response:
    data = {"config": json.dumps(config)} if config else None
    return client.post("/v1/models", files=bundle_multipart(root), data=data, headers=ADMIN)


def register(client: httpx.Client, model_id: str = MODEL_ID) -> dict[str, str]:
    """A device; returns its Authorization header."""
    r = client.post("/v1/devices", json={"model_id": model_id})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def make_settings(database_url: str, *, round_config: RoundConfig | None = None, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "database_url": database_url, "admin_token": ADMIN_TOKEN, "rate_limit_per_minute": 0.0,
        "scheduler_interval_s": 0.0, "scheduler_tick_s": 0.05, "max_upload_bytes": 64 * 1024,
        "default_round": round_config or RoundConfig(round_size=1000, deadline_s=None, min_reporters=1),
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def aggregator_process(database_url: str, *, workers: int = 1, env: Mapping[str, str] | None = None,
           args: Sequence[str] = ()) -> AggregatorProcess:
    """``fedpa-aggregator serve`` (not started yet) with the tests' admin token, no rate limit and a fast scheduler."""
    quick = {"FEDPA_RATE_LIMIT_PER_MINUTE": "0", "FEDPA_SCHEDULER_INTERVAL_S": "0.01"}
    return AggregatorProcess(database_url=database_url, admin_token=ADMIN_TOKEN, workers=workers, args=args,
                             env={**quick, **(env or {})})


def wait_for(predicate, *, timeout: float = 10.0, interval: float = 0.02):
    """Poll ``predicate()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)
