"""A verified export bundle on disk: its manifest, files, programs and initial tensors.

``Bundle.open`` refuses anything it cannot trust (missing or tampered file, unknown format, a
manifest without the programs a client needs) with a :class:`BundleError` naming the file, so an
edge client never runs half a bundle. Usage::

    bundle = Bundle.open("bundles/kuaisar-r-v1")
    tensors = bundle.personalisation({"onehot_feat2": 2, "reco_active_level": 3})
    logits = bundle.scorer("pte").score(x, tensors)
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from fedpa.errors import BundleError, PayloadError
from fedpa.manifest import PERSONALISATION_GROUPS, Manifest, ProgramSpec, read_manifest
from fedpa.payload import decode_tensors
from fedpa.runtime.features import FeatureEncoder
from fedpa.runtime.golden import Golden, read_golden
from fedpa.wire import (
    BACKBONE_FILE,
    GOLDEN_FILE,
    INFERENCE_ONNX,
    INFERENCE_PTE,
    PRIVATE_INIT_FILE,
    PROGRAM_KEYS,
    REQUIRED_FILES,
    SHARED_STATE_FILE,
    TRAINING_PTE,
)

if TYPE_CHECKING:
    from fedpa.data.schema import FeatureSchema
    from fedpa.runtime.programs import Scorer, Trainer

__all__ = ["Bundle"]

Backend = Literal["pte", "onnx"]


class Bundle:
    """An opened, verified bundle directory. Cheap to open; programs load on first use."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> Bundle:
        """Read ``manifest.json`` and check every listed file's size and sha256 (unless ``verify=False``)."""
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"{path}: not a bundle directory")
        manifest = read_manifest(path, verify_files=verify)
        unlisted = [f for f in REQUIRED_FILES if f not in manifest.files]
        if unlisted:
            hint = (" (built before the frozen student became a program input: rebuild it)"
                    if unlisted == [BACKBONE_FILE] else " (incomplete bundle)")
            raise BundleError(f"{path}: manifest lists no {unlisted}{hint}")
        for key, file in PROGRAM_KEYS.items():
            spec = manifest.programs.get(key)
            if spec is None or spec.file != file:
                raise BundleError(f"{path}: manifest has no program {key!r} in {file}")
        return cls(path, manifest)

    # ------------------------------------------------------------------ schema and tensors

    @cached_property
    def schema(self) -> FeatureSchema:
        from fedpa.data.schema import FeatureSchema

        return FeatureSchema.from_dict(self.manifest.feature_schema)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(self.manifest.backbone["cardinalities"])

    @property
    def personalisation_names(self) -> tuple[str, ...]:
        """The inference program's personalisation inputs, in order: private, then group, then gate tensors."""
        return tuple(t.name for t in self.manifest.programs["inference"].inputs if t.group in PERSONALISATION_GROUPS)

    def encoder(self) -> FeatureEncoder:
        return FeatureEncoder(self.schema)

    def _tensors(self, name: str) -> dict[str, np.ndarray]:
        try:
            return decode_tensors((self.path / name).read_bytes())
        except (OSError, PayloadError) as exc:
            raise BundleError(f"{self.path / name}: {exc}") from exc

    def shared_state(self) -> dict[str, np.ndarray]:
        """The initial shared bank, by wire name (gate once, each group tensor per group value).

        Materialised from ``shared_state.safetensors`` (the stored tensors) and the manifest's law
        (``shared_state.initial``: seed and drawn tensors), :meth:`fedpa.state.SharedStateSpec.initial_bank`.
        """
        stored = self._tensors(SHARED_STATE_FILE)
        try:
            return self.manifest.shared_state.initial_bank(stored)
        except PayloadError as exc:
            raise BundleError(f"{self.path / SHARED_STATE_FILE}: {exc}") from exc

    @cached_property
    def frozen(self) -> dict[str, np.ndarray]:
        """The frozen backbone and head from ``backbone.safetensors``, by parameter name in program-input order.

        Read once per opened bundle and handed to every program (they hold no weights of their
        own); names, shapes and dtypes must be exactly the programs' ``"frozen"`` inputs.
        """
        arrays = self._tensors(BACKBONE_FILE)
        specs = {key: [t for t in self.manifest.programs[key].inputs if t.group == "frozen"] for key in PROGRAM_KEYS}
        declared = specs["inference"]
        for key, other in specs.items():
            if [(t.name, t.shape) for t in other] != [(t.name, t.shape) for t in declared]:
                raise BundleError(f"{self.path}: program {key!r} declares other frozen inputs than 'inference'")
        missing = [t.name for t in declared if t.name not in arrays]
        unknown = sorted(set(arrays) - {t.name for t in declared})
        if missing or unknown:
            raise BundleError(f"{BACKBONE_FILE}: tensors differ from the programs' frozen inputs: "
                              f"missing {missing[:5]}, unknown {unknown[:5]}")
        out = {}
        for t in declared:
            a = arrays[t.name]
            if a.dtype != np.float32:
                raise BundleError(f"{BACKBONE_FILE}: {t.name} has dtype {a.dtype}, the programs need float32")
            if tuple(a.shape) != tuple(t.shape):
                raise BundleError(f"{BACKBONE_FILE}: {t.name} has shape {tuple(a.shape)}, the programs need "
                                  f"{tuple(t.shape)}")
            if not np.isfinite(a).all():
                raise BundleError(f"{BACKBONE_FILE}: {t.name} contains NaN or infinite values")
            out[t.name] = np.ascontiguousarray(a)
        return out

    def private_init(self) -> dict[str, np.ndarray]:
        """The initial private tensors (user adapter), by parameter name."""
        return self._tensors(PRIVATE_INIT_FILE)

    def groups_of(self, x_row: np.ndarray) -> dict[str, int]:
        """A user's group values read from one encoded row (the grouping attributes are user features)."""
        row = np.asarray(x_row).reshape(-1)
        return {a: int(row[p]) for a, p in zip(self.schema.group_attributes, self.schema.group_positions, strict=True)}

    def personalisation(self, groups: Mapping[str, int], *, shared: Mapping[str, np.ndarray] | None = None,
                        private: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """One user's inference/training tensors by parameter name.

        ``shared`` holds wire names (the whole bank or just this device's download; default: the
        bundle's initial bank); ``private`` holds parameter names (default: the bundle's initial).
        """
        shared = self.shared_state() if shared is None else shared
        private = self.private_init() if private is None else private
        try:
            specs = self.manifest.shared_state.for_groups(groups)
        except PayloadError as exc:
            raise BundleError(str(exc)) from exc
        missing = [t.name for t in specs if t.name not in shared]
        if missing:
            raise BundleError(f"shared state lacks {missing[:5]} for groups {dict(groups)}")
        out = {t.param: np.asarray(shared[t.name], dtype=np.float32) for t in specs}
        out.update({n: np.asarray(a, dtype=np.float32) for n, a in private.items()})
        names = set(self.personalisation_names)
        if set(out) != names:
            raise BundleError(f"personalisation tensors: missing {sorted(names - set(out))[:5]}, "
                              f"unknown {sorted(set(out) - names)[:5]}")
        return {n: out[n] for n in self.personalisation_names}

    def golden(self) -> Golden:
        return read_golden(self.path / GOLDEN_FILE, self.personalisation)

    # ------------------------------------------------------------------ programs

    def program(self, key: str) -> ProgramSpec:
        return self.manifest.programs[key]

    def scorer(self, backend: Backend = "pte", *, threads: int = 1) -> Scorer:
        """A scorer over the ExecuTorch (``"pte"``) or ONNX (``"onnx"``) inference program."""
        from fedpa.runtime.programs import OnnxScorer, PteScorer

        if backend == "pte":
            return PteScorer(self.path / INFERENCE_PTE, self.program("inference"), self.cardinalities, self.frozen)
        if backend == "onnx":
            return OnnxScorer(self.path / INFERENCE_ONNX, self.program("inference_onnx"), self.cardinalities,
                              self.frozen, threads=threads)
        raise BundleError(f"unknown backend {backend!r}; expected 'pte' or 'onnx'")

    def trainer(self, *, lr: float = 0.05) -> Trainer:
        """A fresh on-device trainer (its tensors start as exported; ``write`` yours in)."""
        from fedpa.runtime.programs import Trainer

        return Trainer(self.path / TRAINING_PTE, self.program("training"), self.cardinalities, self.frozen, lr=lr)
