"""``verify`` and ``inspect``: checking a bundle end to end, and describing it for humans.

Verification goes beyond the hashes ``Bundle.open`` checks: the files must agree with the
manifest (schema, shared-state and private tensor names and shapes), and the golden vectors must
replay within tolerance on the real ``.pte``, ``.onnx`` and training ``.pte``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedpa.data.schema import CategoricalFeature
from fedpa.errors import BundleError
from fedpa.manifest import PERSONALISATION_GROUPS
from fedpa.runtime.bundle import Backend, Bundle
from fedpa.runtime.parity import ParityReport, check_golden
from fedpa.signing import PublicKey, verify_bundle_signature
from fedpa.wire import MANIFEST_NAME, SIGNATURE_NAME

__all__ = ["VerifyResult", "summarise", "verify_bundle"]


@dataclass
class VerifyResult:
    bundle: Bundle
    parity: ParityReport

    @property
    def ok(self) -> bool:
        return self.parity.ok


def _check_contents(bundle: Bundle) -> None:
    """The data files say what the manifest says they do."""
    m = bundle.manifest
    bundle.shared_state()  # materialising it checks the stored tensors against the manifest (BundleError)
    private = bundle.private_init()
    declared = {t.name: tuple(t.shape) for t in m.private_tensors}
    if {n: tuple(a.shape) for n, a in private.items()} != declared:
        raise BundleError("private_init.safetensors: tensors differ from the manifest's private_tensors")
    inputs = {t.name: tuple(t.shape) for t in m.programs["inference"].inputs[1:]}
    onnx_inputs = {t.name: tuple(t.shape) for t in m.programs["inference_onnx"].inputs[1:]}
    if inputs != onnx_inputs:
        raise BundleError("the .pte and .onnx inference programs declare different personalisation or frozen inputs")
    if not bundle.frozen:  # backbone.safetensors: exactly the programs' frozen inputs (names, shapes, float32)
        raise BundleError("backbone.safetensors holds no tensors")


def verify_bundle(path: str | Path, *, backends: tuple[Backend, ...] = ("pte", "onnx"),
                  trust_key: PublicKey | None = None) -> VerifyResult:
    """Signature (with ``trust_key``), hashes, manifest schema, file contents, then golden-vector parity.

    Raises BundleError when unreadable, SignatureError when not signed by ``trust_key``.
    """
    if trust_key is not None:
        verify_bundle_signature(path, trust_key)
    bundle = Bundle.open(path)
    _check_contents(bundle)
    return VerifyResult(bundle=bundle, parity=check_golden(bundle, backends=backends))


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def summarise(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """A JSON-able description: files and sizes, parameter counts per owner group, schema, programs."""
    bundle = Bundle.open(path, verify=verify)
    m = bundle.manifest
    backbone = m.backbone
    # read by hand, not through fedpa.model.BackboneConfig: this module stays torch-free
    cards, d = backbone["cardinalities"], backbone["embedding_dim"]
    n_signal, ds = backbone.get("n_signal_features", 0), backbone.get("signal_dim", 4)
    n_wide = len(cards) - n_signal
    sizes = [n_wide * d + n_signal * ds, *backbone["hidden"], 1]
    # the item code's rows are not in the programs when the item table serves them as item vectors
    served = 0 if m.item_vectors is None else m.item_vectors.rows * m.item_vectors.dim
    frozen = (sum(cards[:n_wide]) * d + sum(cards[n_wide:]) * ds - served
              + sum(a * b + b for a, b in itertools.pairwise(sizes)))
    personal = [t for t in m.programs["inference"].inputs if t.group in PERSONALISATION_GROUPS]
    per_device = {t.name: _numel(t.shape) for t in personal}
    by_group: dict[str, int] = {}
    for t in personal:
        by_group[t.group] = by_group.get(t.group, 0) + _numel(t.shape)
    files = {name: entry.size for name, entry in m.files.items()}
    files[MANIFEST_NAME] = (bundle.path / MANIFEST_NAME).stat().st_size
    if (bundle.path / SIGNATURE_NAME).is_file():
        files[SIGNATURE_NAME] = (bundle.path / SIGNATURE_NAME).stat().st_size
    return {
        "path": str(bundle.path),
        "model_id": m.model_id,
        "model_version": m.model_version,
        "format_version": m.format_version,
        "created_at": m.created_at,
        "files": files,
        "total_bytes": sum(files.values()),
        "parameters": {
            "frozen (backbone, embeddings, head)": frozen,
            "item vectors (served by the item table, not in the bundle)": served,
            "private (on device)": by_group.get("private", 0),
            "group (this device's values)": by_group.get("group", 0),
            "gate": by_group.get("gate", 0),
            "shared bank (all group values + gate)": sum(t.numel for t in m.shared_state.tensors),
            "personalisation tensors per device": len(per_device),
        },
        "backbone": backbone,
        "adapter": {k: v for k, v in m.adapter.items() if k != "extra"},
        "features": [
            {"name": f.name, "side": f.side, "source": f.source, "kind": f.kind, "codes": f.cardinality}
            for f in (CategoricalFeature.from_dict(d) for d in m.feature_schema.get("features", []))
        ],
        "group_attributes": m.feature_schema.get("group_attributes", []),
        "item_vectors": None if m.item_vectors is None else m.item_vectors.model_dump(),
        "programs": {
            key: {"file": p.file, "runtime": p.runtime, "kind": p.kind, "inputs": len(p.inputs),
                  "outputs": len(p.outputs), "max_batch": p.max_batch}
            for key, p in m.programs.items()
        },
        "privacy": m.privacy.model_dump(),
        "toolchain": m.toolchain,
        "metrics": m.metrics,
    }
