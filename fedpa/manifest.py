"""The bundle manifest (docs/design.md §6), torch-free so the aggregator can read published models.

A bundle is a directory: ``manifest.json`` plus the files it lists with their sha256. The manifest
is the single description of a model's feature schema, architecture, shared-state tensors and
program inputs/outputs; every other component reads these facts from here.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fedpa.errors import BundleError
from fedpa.privacy import DEFAULT_DELTA, Mechanism, PrivacyConfig
from fedpa.state import SharedStateSpec
from fedpa.wire import MANIFEST_NAME, SIGNATURE_NAME

__all__ = [
    "FORMAT_VERSION",
    "PERSONALISATION_GROUPS",
    "FileEntry",
    "ItemVectorSpec",
    "Manifest",
    "PrivacySettings",
    "ProgramSpec",
    "TensorIO",
    "parse_manifest",
    "read_manifest",
    "sha256_file",
]

# 3: the initial bank is a law (shared_state.initial: seed, drawn bounds) plus the stored tensors;
# 2: the programs take the frozen student (backbone.safetensors) and, with manifest.item_vectors,
# the candidates' item vectors as inputs; a format-1 bundle holds its weights inside the programs.
FORMAT_VERSION: Final = 3
_OLD_FORMATS: Final = {1: "whose programs hold their own weights",
                       2: "that ships its whole initial bank (no shared_state.initial)"}
# TensorIO groups a device sets per user: the personalisation inputs of the inference program
PERSONALISATION_GROUPS: Final = ("private", "group", "gate")
# Bundle files sit side by side; a name with a path in it could make a downloader write outside the bundle.
_PLAIN_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class TensorIO(BaseModel):
    """One input or output of an exported program; a ``-1`` dimension is dynamic (the batch)."""

    model_config = ConfigDict(frozen=True)
    name: str
    shape: tuple[int, ...]
    dtype: Literal["float32", "int64"]
    # "item": the per-candidate item vector (``item_vector``), served by the item table;
    # "frozen": the backbone and head, fed from backbone.safetensors to every program
    group: Literal["input", "item", "private", "group", "gate", "frozen", "output", "loss", "label"] = "input"


class ProgramSpec(BaseModel):
    """An exported program file and its calling convention (inputs in order, outputs in order)."""

    model_config = ConfigDict(frozen=True)
    file: str
    runtime: Literal["executorch", "onnxruntime"]
    kind: Literal["inference", "training"]
    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]
    # ExecuTorch plans memory for the largest batch; bigger batches must be split (or refused)
    max_batch: int | None = Field(None, ge=1)


class ItemVectorSpec(BaseModel):
    """The programs take the item code's embedding as a runtime ``item_vector`` input (not a constant).

    The item table (``fedpa.runtime.items``, format 2) serves each candidate's vector, int8-quantised;
    ``sha256`` is the digest of the quantised rows (``int8 [rows, dim]`` bytes then ``float32 [rows]``
    scale bytes) the golden vectors were computed with, so ``fedpa-export items`` refuses a student
    whose rows differ from the bundle's.
    """

    model_config = ConfigDict(frozen=True)
    feature: str  # the schema feature whose embedding the vector replaces ("item_code")
    column: int = Field(ge=0)  # its position in x (its code there is ignored by the programs)
    rows: int = Field(ge=1)  # item codes incl. the OOV code 0
    dim: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class PrivacySettings(BaseModel):
    """The LDP settings the publisher asks devices to apply.

    A request, not an order: each device checks them against its own ``fedpa.privacy.DevicePolicy``
    (σ floor, C ceiling) and keeps its own ε budget and δ. ``rounds`` is how many uploads per user
    the publisher planned σ for; a device derives its default σ floor from it.
    """

    model_config = ConfigDict(frozen=True)
    mechanism: Mechanism = PrivacyConfig.mechanism
    clip_norm: float = Field(PrivacyConfig.clip_norm, gt=0, allow_inf_nan=False)
    noise_multiplier: float = Field(PrivacyConfig.noise_multiplier, ge=0, allow_inf_nan=False)
    delta: float = Field(DEFAULT_DELTA, gt=0, lt=1)
    epsilon_budget: float | None = Field(None, gt=0, allow_inf_nan=False)
    rounds: int = Field(30, ge=1)  # planned uploads per user

    @classmethod
    def requesting(cls, config: PrivacyConfig | None, *, rounds: int = 30) -> PrivacySettings:
        """A bundle's request that devices apply ``config`` over ``rounds`` uploads (None: no LDP)."""
        if config is None:
            return cls(mechanism="none", noise_multiplier=0.0, rounds=rounds)
        budget = config.epsilon_budget
        return cls(mechanism=config.mechanism, clip_norm=config.clip_norm,
                   noise_multiplier=config.upload.noise_multiplier, delta=config.delta,
                   epsilon_budget=None if budget is None else _stated_budget(budget), rounds=rounds)


def _stated_budget(epsilon: float) -> float:
    """An ε budget as a person states it: 6 significant digits.

    A budget is a policy number (8, 0.5, 1.25), not a measurement; float arithmetic on the way to
    the bundle (a tolerance factor, a unit conversion) must not turn a request for ε = 8 into
    8.000000008 in the manifest. σ and C are not rounded: the device applies them exactly.
    """
    return float(f"{epsilon:.6g}")


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    format_version: Literal[3] = FORMAT_VERSION
    model_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    model_version: int = Field(ge=1)
    created_at: str
    feature_schema: dict[str, Any]  # fedpa.data.FeatureSchema.to_dict()
    backbone: dict[str, Any]  # fedpa.model.BackboneConfig.to_dict()
    adapter: dict[str, Any]  # fedpa.model.AdapterConfig.to_dict()
    shared_state: SharedStateSpec
    private_tensors: tuple[TensorIO, ...]  # initial values ship in the bundle, never uploaded
    privacy: PrivacySettings = PrivacySettings()
    programs: dict[str, ProgramSpec] = {}
    item_vectors: ItemVectorSpec | None = None  # None: the programs embed every code themselves
    files: dict[str, FileEntry] = {}
    metrics: dict[str, Any] = {}  # teacher / student test metrics at export time
    toolchain: dict[str, str] = {}  # versions that wrote the programs (torch, executorch, onnx opset, ...)

    @field_validator("shared_state")
    @classmethod
    def _initial_law(cls, spec: SharedStateSpec) -> SharedStateSpec:
        # without it no device or server could materialise the bank from shared_state.safetensors
        if spec.initial is None:
            raise ValueError("shared_state.initial (the initial bank's seed and drawn tensors) is required")
        return spec

    @field_validator("files")
    @classmethod
    def _plain_file_names(cls, files: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for name in files:
            if not _PLAIN_FILE_NAME.fullmatch(name) or ".." in name or name in (MANIFEST_NAME, SIGNATURE_NAME):
                raise ValueError(f"bundle file name {name!r} must be a plain file name "
                                 "(letters, digits, '.', '_', '-'; no path, not manifest.json)")
        return files

    @property
    def shared_state_bytes(self) -> int:
        return sum(4 * t.numel for t in self.shared_state.tensors)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_manifest(raw: object, *, source: str = MANIFEST_NAME) -> Manifest:
    """Validate a decoded ``manifest.json`` (from disk or a server) before anything trusts it.

    Raises BundleError naming ``source``: not an object, unknown format version, schema mismatch.
    """
    if not isinstance(raw, dict):
        raise BundleError(f"{source}: manifest must be a JSON object")
    version = raw.get("format_version")
    if version in _OLD_FORMATS:
        raise BundleError(f"{source}: format_version {version} is a bundle {_OLD_FORMATS[version]}; this FedPA "
                          f"reads format_version {FORMAT_VERSION} (backbone.safetensors, served item vectors, "
                          "the initial bank drawn from a seed): rebuild it with this version's fedpa-export build")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{source}: unknown format_version {version!r}; this FedPA reads format_version {FORMAT_VERSION}"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{source}: manifest does not match the schema: {exc}") from exc


def read_manifest(bundle_dir: str | Path, *, verify_files: bool = True) -> Manifest:
    """Parse ``manifest.json`` and (by default) check every listed file's size and sha256.

    Raises BundleError naming the file at fault: missing, tampered, unknown format version.
    """
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{path}: no manifest.json (not a FedPA bundle)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    manifest = parse_manifest(raw, source=str(path))
    if verify_files:
        for name, entry in manifest.files.items():
            file = bundle_dir / name
            if not file.is_file():
                raise BundleError(f"{file}: listed in the manifest but missing")
            if file.stat().st_size != entry.size:
                raise BundleError(f"{file}: size {file.stat().st_size} != manifest's {entry.size}")
            actual = sha256_file(file)
            if actual != entry.sha256:
                raise BundleError(f"{file}: sha256 {actual} != manifest's {entry.sha256} (corrupt or tampered)")
    return manifest
