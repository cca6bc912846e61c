"""Golden vectors: the bundle's own proof of what its programs must compute (torch-free).

``golden.json`` holds a few inference cases and one training step computed by eager PyTorch at
export time. Any runtime — this package's ExecuTorch and onnxruntime wrappers, the Android app's
Java engine — replays them and compares within ``atol + rtol·|expected|``. The personalisation
tensors they start from are not stored: they are the bundle's initial ones for ``groups`` plus a
deterministic perturbation (:func:`perturbation`, an integer hash every language computes
bit-exactly in float32), so the file keeps only its seed and scale. Gradients are stored as base64
of little-endian float32 bytes: exact, about 2.5× smaller than decimal text, and one
``ByteBuffer.order(LITTLE_ENDIAN).asFloatBuffer()`` away in Java. The field list is in
docs/export.md.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedpa.counter_rng import counter_uniform
from fedpa.errors import BundleError

__all__ = [
    "GOLDEN_FORMAT_VERSION",
    "Golden",
    "GoldenCase",
    "GoldenTraining",
    "decode_tensor",
    "encode_tensor",
    "perturb",
    "perturbation",
    "read_golden",
    "write_golden",
]

GOLDEN_FORMAT_VERSION = 2  # 2: the perturbed personalisation is a formula (seed, scale), not stored tensors


def perturbation(seed: int, index: int, n: int) -> np.ndarray:
    """``n`` float32 values in [-1, 1) for the personalisation tensor at ``index`` (its input position).

    :func:`fedpa.counter_rng.counter_uniform` (documented there): the Java engine (``Golden.java``)
    computes the same values bit for bit, so golden.json need not carry the perturbed tensors.
    """
    return counter_uniform(seed, index, n)


def perturb(start: Mapping[str, np.ndarray], *, seed: int, scale: float) -> dict[str, np.ndarray]:
    """``start[k] + float32(scale) · perturbation(seed, k)`` per tensor, in float32 (one rounding per operation)."""
    s = np.float32(scale)
    out = {}
    for index, (name, a) in enumerate(start.items()):
        a = np.asarray(a, dtype=np.float32)
        noise = (perturbation(seed, index, a.size) * s).astype(np.float32)
        out[name] = (a.reshape(-1) + noise).astype(np.float32).reshape(a.shape)
    return out


# groups → the bundle's initial personalisation tensors for them, in inference-input order
StartTensors = Callable[[Mapping[str, int]], Mapping[str, np.ndarray]]


def encode_tensor(array: np.ndarray) -> dict[str, Any]:
    """A float32 array as ``{"shape", "dtype", "b64"}`` (row-major, little-endian)."""
    a = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(a.shape), "dtype": "float32", "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_tensor(entry: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_tensor`; refuses a byte count that does not fit the shape."""
    shape = tuple(int(d) for d in entry["shape"])
    raw = base64.b64decode(entry["b64"])
    if len(raw) != 4 * int(np.prod(shape, dtype=np.int64)):
        raise BundleError(f"golden tensor: {len(raw)} bytes do not fit shape {shape}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def _floats(values: np.ndarray) -> list[float]:
    # 9 significant digits round-trip every float32 exactly
    return [float(f"{v:.9g}") for v in np.asarray(values, dtype=np.float32).reshape(-1)]


@dataclass(frozen=True)
class GoldenCase:
    """One inference call: codes ``x`` [N, F] → ``logits`` [N] under the golden personalisation.

    ``item_vector`` [N, d]: the candidates' dequantised item vectors (the item table's values for
    their item codes), for a bundle whose programs take them (``manifest.item_vectors``).
    """

    x: np.ndarray
    logits: np.ndarray
    item_vector: np.ndarray | None = None


@dataclass(frozen=True)
class GoldenTraining:
    """One SGD step from the golden personalisation on the batch ``(x, y)``.

    ``gradients`` are of the mean BCE loss; the updated tensors are ``personalisation - lr·gradients``
    (plain SGD); ``loss_after`` is the loss on the same batch after that update.
    """

    lr: float
    x: np.ndarray
    y: np.ndarray
    loss: float
    gradients: dict[str, np.ndarray]
    loss_after: float
    item_vector: np.ndarray | None = None  # [B, d], as for GoldenCase


@dataclass(frozen=True)
class Golden:
    """Everything in ``golden.json``, with ``personalisation`` (inference-input order) rebuilt from the bundle.

    ``personalisation = perturb(bundle's initial tensors for groups, seed=seed, scale=scale)``.
    """

    personalisation: dict[str, np.ndarray]
    cases: tuple[GoldenCase, ...]
    training: GoldenTraining
    groups: dict[str, int] = field(default_factory=dict)
    atol: float = 1e-5
    rtol: float = 1e-4
    seed: int = 0
    scale: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        t = self.training
        return {
            "format_version": GOLDEN_FORMAT_VERSION,
            "atol": self.atol,
            "rtol": self.rtol,
            "groups": dict(self.groups),
            "perturbation": {"seed": self.seed, "scale": float(np.float32(self.scale))},
            "inference": [
                {"x": np.asarray(c.x, dtype=np.int64).tolist(), "logits": _floats(c.logits),
                 **_item_vector(c.item_vector)} for c in self.cases
            ],
            "training": {
                "lr": t.lr,
                "x": np.asarray(t.x, dtype=np.int64).tolist(),
                **_item_vector(t.item_vector),
                "y": _floats(t.y),
                "loss": _floats(np.asarray([t.loss]))[0],
                "gradients": {n: encode_tensor(g) for n, g in t.gradients.items()},
                "loss_after": _floats(np.asarray([t.loss_after]))[0],
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], start: StartTensors) -> Golden:
        """``start(groups)``: the bundle's initial personalisation for those groups (``Bundle.personalisation``)."""
        version = data.get("format_version")
        if version != GOLDEN_FORMAT_VERSION:
            hint = " (written before the perturbation became a formula: rebuild the bundle)" if version == 1 else ""
            raise BundleError(f"golden.json: format_version {version!r} is not the supported "
                              f"{GOLDEN_FORMAT_VERSION}{hint}")
        try:
            t = data["training"]
            groups = {k: int(v) for k, v in data["groups"].items()}
            seed, scale = int(data["perturbation"]["seed"]), float(data["perturbation"]["scale"])
            return cls(
                personalisation=perturb(start(groups), seed=seed, scale=scale),
                cases=tuple(
                    GoldenCase(x=np.asarray(c["x"], dtype=np.int64), logits=np.asarray(c["logits"], np.float32),
                               item_vector=_read_item_vector(c))
                    for c in data["inference"]
                ),
                training=GoldenTraining(
                    lr=float(t["lr"]),
                    x=np.asarray(t["x"], dtype=np.int64),
                    y=np.asarray(t["y"], dtype=np.float32),
                    loss=float(t["loss"]),
                    gradients={n: decode_tensor(e) for n, e in t["gradients"].items()},
                    loss_after=float(t["loss_after"]),
                    item_vector=_read_item_vector(t),
                ),
                groups=groups,
                atol=float(data.get("atol", 1e-5)),
                rtol=float(data.get("rtol", 1e-4)),
                seed=seed,
                scale=scale,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"golden.json: malformed ({exc!r})") from exc


def _item_vector(vector: np.ndarray | None) -> dict[str, Any]:
    return {} if vector is None else {"item_vector": encode_tensor(vector)}


def _read_item_vector(entry: Mapping[str, Any]) -> np.ndarray | None:
    """A case's ``item_vector`` [N, d] (absent for a bundle whose programs embed the item code)."""
    if "item_vector" not in entry:
        return None
    vector = decode_tensor(entry["item_vector"])
    if vector.ndim != 2 or len(vector) != len(entry["x"]):
        raise BundleError(f"golden.json: item_vector {vector.shape} does not fit {len(entry['x'])} rows")
    return vector


def write_golden(path: Path, golden: Golden) -> None:
    """Compact JSON (no indentation): the file counts against the bundle's size budget."""
    path.write_text(json.dumps(golden.to_dict(), separators=(",", ":")))


def read_golden(path: Path, start: StartTensors) -> Golden:
    """The golden vectors at ``path``; ``start(groups)`` gives the initial personalisation to perturb."""
    try:
        return Golden.from_dict(json.loads(Path(path).read_text()), start)
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable golden vectors ({exc})") from exc
