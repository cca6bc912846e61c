"""Packaging a trained student into a verified bundle directory (docs/design.md §6).

Everything is written into a temporary sibling directory, the bundle verifies itself there (hashes
and golden-vector parity on the real programs), and only then is it renamed into place: a failed
or interrupted build leaves nothing half-written under the output name.

Usage: ``build_bundle(student, schema, "bundles/kuaisar-r", model_id="kuaisar-r").path``.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from export.golden import make_golden
from export.lower import lower_inference, lower_onnx, lower_training, toolchain_versions
from export.wrappers import frozen_names, personalisation_ios
from fedpa.errors import BundleError, ConfigError
from fedpa.manifest import FileEntry, ItemVectorSpec, Manifest, PrivacySettings, sha256_file
from fedpa.model import AdapterConfig, Backbone, FedPARecommender, ParamGroup, external_item_vectors
from fedpa.payload import encode_tensors
from fedpa.personalise import load_tensors, read_tensors, shared_state_spec, stored_tensors
from fedpa.runtime.bundle import Bundle
from fedpa.runtime.golden import write_golden
from fedpa.runtime.items import ITEM_CODE, dequantise_vectors, item_table_features, quantise_vectors, vectors_digest
from fedpa.runtime.parity import ParityReport, check_golden
from fedpa.signing import sign_bundle
from fedpa.wire import (
    BACKBONE_FILE,
    GOLDEN_FILE,
    INFERENCE_ONNX,
    INFERENCE_PTE,
    MANIFEST_NAME,
    PRIVATE_INIT_FILE,
    SHARED_STATE_FILE,
    TRAINING_PTE,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from fedpa.data.schema import FeatureSchema

__all__ = ["BuildResult", "build_bundle", "check_architecture", "item_vector_source"]

Progress = Callable[[str], None]


@dataclass
class BuildResult:
    path: Path
    manifest: Manifest
    parity: ParityReport
    seconds: dict[str, float] = field(default_factory=dict)  # per build stage


def check_architecture(student: Backbone, schema: FeatureSchema, adapter: AdapterConfig) -> None:
    """Refuse a student that does not fit the feature schema or its own declared architecture."""
    config = student.config
    if tuple(config.cardinalities) != tuple(schema.cardinalities):
        raise BundleError(f"feature schema mismatch: the model's cardinalities {config.cardinalities} != "
                          f"the schema's {schema.cardinalities}")
    if config.n_user_features != len(schema.user_feature_positions):
        raise BundleError(f"feature schema mismatch: the model has {config.n_user_features} user features, "
                          f"the schema {len(schema.user_feature_positions)}")
    expected = {k: tuple(v.shape) for k, v in Backbone(config).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in student.state_dict().items()}
    if expected != found:
        diff = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        raise BundleError(f"architecture mismatch: weights do not fit {config}: "
                          f"{[(k, found.get(k), expected.get(k)) for k in diff[:3]]} (found, expected)")
    cards = dict(zip(schema.names, schema.cardinalities, strict=True))
    users = {schema.names[p] for p in schema.user_feature_positions}
    for attribute, n in zip(adapter.group_attributes, adapter.group_cardinalities, strict=True):
        if attribute not in users or cards[attribute] != n:
            raise BundleError(f"adapter group attribute {attribute!r} with {n} values does not match the "
                              f"schema's user features {sorted(users)}")


def _check_identity(model_id: str, model_version: int) -> None:
    """Fail before minutes of lowering, not at the end, on an id the manifest would refuse."""
    try:
        Manifest.model_validate({"model_id": model_id, "model_version": model_version, "created_at": "",
                                 "feature_schema": {}, "backbone": {}, "adapter": {},
                                 "shared_state": {"tensors": [], "initial": {"seed": 0, "drawn": {}}},
                                 "private_tensors": []})
    except ValueError as exc:  # pydantic's ValidationError
        raise BundleError(f"invalid model id {model_id!r} or version {model_version!r}: {exc}") from exc


def item_vector_source(student: Backbone, schema: FeatureSchema) -> tuple[Backbone, ItemVectorSpec | None, Any]:
    """The backbone the programs are lowered from, the manifest's ``item_vectors`` and the device's vectors.

    A schema with an ``item_code`` feature served by the item table gets a backbone that takes
    that column's embedding as the ``item_vector`` input (:func:`fedpa.model.external_item_vectors`):
    the rows leave the programs and travel in the item table instead. The student's rows are
    quantised *here, once* (:func:`fedpa.runtime.items.quantise_vectors`); the dequantised
    ``[rows, d]`` values are returned for the golden vectors, so every runtime's parity is checked
    against exactly what the table will serve. Other schemas: ``(student, None, None)``.
    """
    if ITEM_CODE not in item_table_features(schema):
        return student, None, None
    column = schema.names.index(ITEM_CODE)
    with torch.no_grad():
        rows = student.item_rows(column).detach().numpy().astype("float32")
    q, scale = quantise_vectors(rows)
    spec = ItemVectorSpec(feature=ITEM_CODE, column=column, rows=len(q), dim=q.shape[1],
                          sha256=vectors_digest(q, scale))
    return external_item_vectors(student, column), spec, dequantise_vectors(q, scale)


def frozen_tensors(model: FedPARecommender) -> dict[str, np.ndarray]:
    """``backbone.safetensors``' contents: the frozen backbone and head by parameter name, in program-input order."""
    params = dict(model.named_parameters())
    return {n: params[n].detach().numpy().astype(np.float32) for n in frozen_names(model)}


def _write(directory: Path, name: str, data: bytes) -> None:
    (directory / name).write_bytes(data)


def build_bundle(student: Backbone, schema: FeatureSchema, out: str | Path, *, model_id: str,
                 model_version: int = 1, adapter: AdapterConfig | None = None,
                 privacy: PrivacySettings | None = None, metrics: Mapping[str, Any] | None = None,
                 seed: int = 0, max_batch: int = 1024, max_train_batch: int = 1024, golden_lr: float = 0.05,
                 overwrite: bool = False, progress: Progress | None = None,
                 signing_key: ec.EllipticCurvePrivateKey | None = None) -> BuildResult:
    """Lower ``student`` with FedPA adapters to ExecuTorch/ONNX and write a self-verified bundle.

    With ``signing_key`` the manifest is signed (``manifest.sig``, :mod:`fedpa.signing`): devices
    that pin the publisher's key accept nothing else.
    """
    from fedpa.train import adapter_config_for

    say = progress or (lambda _msg: None)
    out = Path(out)
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists (pass overwrite=True / --overwrite to replace it)")
    _check_identity(model_id, model_version)
    if not 0 <= seed <= 0xFFFFFFFF:  # the initial bank's law and the golden perturbation hash a 32-bit seed
        raise BundleError(f"seed {seed} is not a 32-bit unsigned integer (0..4294967295)")
    try:
        adapter = adapter or adapter_config_for(schema)
    except ConfigError as exc:
        raise BundleError(f"invalid adapter settings: {exc}") from exc
    check_architecture(student, schema, adapter)

    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 3)
        clock = now
        say(f"{stage}: {seconds[stage]:.1f} s")

    backbone, item_vectors, vectors = item_vector_source(copy.deepcopy(student).eval(), schema)
    torch.manual_seed(seed)
    model = FedPARecommender(backbone.eval(), adapter).eval()
    spec = shared_state_spec(model, seed=seed)
    stored = stored_tensors(model, spec)  # shared_state.safetensors; the rest of the bank is drawn from seed
    bank = spec.initial_bank(stored)
    private = read_tensors(model, ParamGroup.PRIVATE)
    # The training program's built-in tensors: the initial ones for the OOV group values (clients
    # overwrite them with their own before training).
    oov = {a: 0 for a in adapter.group_attributes}
    load_tensors(model, spec.to_params({t.name: bank[t.name] for t in spec.for_groups(oov)}))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would make the published bundle unreadable to a serving user
    try:
        pte, pte_spec = lower_inference(model, max_batch=max_batch, file=INFERENCE_PTE)
        _write(tmp, INFERENCE_PTE, pte)
        lap("inference.pte (ExecuTorch + XNNPACK)")
        onnx_bytes, onnx_spec = lower_onnx(model, max_batch=max_batch, file=INFERENCE_ONNX)
        _write(tmp, INFERENCE_ONNX, onnx_bytes)
        lap("inference.onnx")
        training, training_spec = lower_training(model, max_batch=max_train_batch, file=TRAINING_PTE)
        _write(tmp, TRAINING_PTE, training)
        lap("training.pte (forward + backward)")

        meta = {"model_id": model_id, "model_version": str(model_version)}
        _write(tmp, BACKBONE_FILE, encode_tensors(frozen_tensors(model), metadata=meta))
        _write(tmp, SHARED_STATE_FILE, encode_tensors(stored, metadata=meta))
        _write(tmp, PRIVATE_INIT_FILE, encode_tensors(private, metadata=meta))
        golden_groups = {a: min(1, n - 1) for a, n in zip(adapter.group_attributes, adapter.group_cardinalities,
                                                          strict=True)}
        start = {**private, **spec.to_params({t.name: bank[t.name] for t in spec.for_groups(golden_groups)})}
        golden = make_golden(model, start, group_positions=dict(zip(schema.group_attributes, schema.group_positions,
                                                                    strict=True)),
                             groups=golden_groups, seed=seed, lr=golden_lr, item_vectors=vectors)
        write_golden(tmp / GOLDEN_FILE, golden)
        lap("shared state, schema, golden vectors")

        files = {p.name: FileEntry(sha256=sha256_file(p), size=p.stat().st_size) for p in sorted(tmp.iterdir())}
        manifest = Manifest(
            model_id=model_id, model_version=model_version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            feature_schema=schema.to_dict(), backbone=student.config.to_dict(), adapter=adapter.to_dict(),
            shared_state=spec,
            private_tensors=tuple(t for t in personalisation_ios(model) if t.group == ParamGroup.PRIVATE.value),
            privacy=privacy or PrivacySettings(),
            programs={"inference": pte_spec, "inference_onnx": onnx_spec, "training": training_spec},
            item_vectors=item_vectors,
            files=files, metrics=dict(metrics or {}), toolchain=toolchain_versions(onnx_bytes),
        )
        # compact JSON: indentation alone would add ~50% to the manifest's share of the size budget
        (tmp / MANIFEST_NAME).write_text(manifest.model_dump_json())
        if signing_key is not None:
            sign_bundle(tmp, signing_key)

        parity = check_golden(Bundle.open(tmp))
        lap("self-check (hashes, golden parity on .pte, .onnx, training .pte)")
        if not parity.ok:
            worst = ", ".join(f"{c.name}: {c.max_abs_error:.2e}" for c in parity.failures()[:5])
            raise BundleError(f"exported programs disagree with eager PyTorch: {worst}")
        _publish(tmp, out, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(path=out, manifest=manifest, parity=parity, seconds=seconds)


def _publish(tmp: Path, out: Path, *, overwrite: bool) -> None:
    """Rename the finished bundle into place; an existing one is swapped out, then removed."""
    if out.exists():
        if not overwrite:
            raise BundleError(f"{out} appeared during the build; not replacing it")
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
