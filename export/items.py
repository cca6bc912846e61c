"""``fedpa-export items``: the item table a bundle's ``item_table`` columns (and item vectors) are served from.

The statistics and codes are computed by ``fedpa.signals.build_item_table`` over the dataset's
open log (``Dataset.signal_log``) with the frequent-item code map of the same pipeline run
(``Dataset.item_codes``); this module only checks that the dataset is the one the bundle was built
from and writes the wire file (``fedpa.runtime.items.ItemTableFile``). Torch-free, except
:func:`student_item_vectors`, which reads the student checkpoint (torch imported there).

The code map must be the model's: the student's ``item_code`` embedding rows were trained on it.
The dataset is therefore re-read with the build's options and its whole feature schema — bucket
edges fitted on the open rows included — must equal the bundle's, or nothing is written. A
bundle whose programs take item vectors (``manifest.item_vectors``) needs the student's rows,
quantised exactly as at the build: their digest must equal the manifest's.

Usage: ``write_item_table("bundle/", ds, "items.safetensors", table_version=2,
code_vectors=student_item_vectors("student.pt", "bundle/"))``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedpa.data.schema import FeatureSchema
from fedpa.errors import BundleError, ConfigError
from fedpa.manifest import read_manifest
from fedpa.runtime.features import schema_differences
from fedpa.runtime.items import ItemTableFile, item_table_features, quantise_vectors, vectors_digest

if TYPE_CHECKING:
    from fedpa.data import Dataset
    from fedpa.model import Backbone

__all__ = ["ItemTableResult", "bundle_kinds", "student_item_vectors", "write_item_table"]


@dataclass(frozen=True)
class ItemTableResult:
    path: Path
    table: ItemTableFile
    nbytes: int

    @property
    def bytes_per_item(self) -> float:
        return self.nbytes / max(len(self.table), 1)


def bundle_kinds(bundle_dir: str | Path) -> tuple[FeatureSchema, tuple[str, ...]]:
    """The bundle's schema and its selected input kinds (to re-read the dataset the same way)."""
    from fedpa.signals import SignalSpec

    manifest = read_manifest(bundle_dir)
    schema = FeatureSchema.from_dict(manifest.feature_schema)
    return schema, SignalSpec.from_dict(schema.signals).kinds


def student_item_vectors(student: str | Path | Backbone | None, bundle_dir: str | Path
                         ) -> tuple[np.ndarray, np.ndarray] | None:
    """The quantised item-code rows of ``student`` (a checkpoint path or the model) for the bundle at ``bundle_dir``.

    None for a bundle whose programs embed the item code themselves. Refuses a missing checkpoint
    or one whose rows (quantised as at the build) differ from the ones the bundle was built with.
    """
    manifest = read_manifest(bundle_dir)
    spec = manifest.item_vectors
    if spec is None:
        return None
    if student is None:
        raise BundleError(f"{bundle_dir}: the bundle's programs take item vectors from the item table: pass the "
                          "student checkpoint the bundle was built from (--student; `fedpa-export build "
                          "--save-student` writes it)")
    from fedpa.train import load_checkpoint

    try:
        model = load_checkpoint(student).model if isinstance(student, (str, Path)) else student
        rows = model.item_rows(spec.column).detach().numpy()
    except ConfigError as exc:
        raise BundleError(f"student checkpoint: {exc}") from exc
    q, scale = quantise_vectors(rows)
    if q.shape != (spec.rows, spec.dim) or vectors_digest(q, scale) != spec.sha256:
        raise BundleError(f"{student}: its item-code rows {q.shape} are not the ones bundle {bundle_dir} was built "
                          f"with ({spec.rows}×{spec.dim}, sha256 {spec.sha256[:12]}…): pass the bundle's own student")
    return q, scale


def write_item_table(bundle_dir: str | Path, ds: Dataset, out: str | Path, *, table_version: int | None = None,
                     as_of_ms: int | None = None, overwrite: bool = False,
                     code_vectors: tuple[np.ndarray, np.ndarray] | None = None) -> ItemTableResult:
    """Compute the item table of ``ds``'s open log for the bundle at ``bundle_dir`` and write it to ``out``.

    ``table_version`` defaults to the current unix time in seconds, so a later refresh is always
    newer; ``as_of_ms`` counts only log rows strictly before that time (default: all of them).
    ``code_vectors`` (:func:`student_item_vectors`) are required exactly when the bundle's
    programs take item vectors.
    """
    from fedpa.signals import build_item_table

    out = Path(out)
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists (pass --overwrite to replace it)")
    manifest = read_manifest(bundle_dir)
    schema = FeatureSchema.from_dict(manifest.feature_schema)
    if (manifest.item_vectors is None) != (code_vectors is None):
        raise BundleError(f"{bundle_dir}: the bundle's programs take item vectors, but none were given (pass the "
                          "student: --student)" if code_vectors is None else
                          f"{bundle_dir}: the bundle's programs embed the item code themselves; no item vectors "
                          "belong in its table")
    if not item_table_features(schema):
        raise BundleError(f"{bundle_dir}: the bundle has no item_table features (built with --features base or "
                          "--without item_stats,item_code); it needs no item table")
    diffs = schema_differences(schema, ds.schema)
    if diffs:
        raise BundleError("the dataset is not the one the bundle was built from (use the build's --dataset, "
                          "--option, --split and --seed): " + "; ".join(diffs[:3]))
    if ds.signal_log is None or ds.item_codes is None:
        raise BundleError(f"dataset {ds.name!r} carries no open log for item statistics (loaded with --features base?)")
    table = build_item_table(schema, ds.signal_log, item_ids=ds.item_ids, item_codes=ds.item_codes,
                             as_of_ms=as_of_ms)
    version = int(time.time()) if table_version is None else int(table_version)
    info = {"dataset": ds.name, "log_rows": len(ds.signal_log.user), "as_of_ms": as_of_ms,
            "items_with_code": int((ds.item_codes > 0).sum())}
    wire = ItemTableFile.from_signals(table, schema, model_id=manifest.model_id,
                                      model_version=manifest.model_version, table_version=version,
                                      created_at=datetime.now(UTC).isoformat(timespec="seconds"), info=info,
                                      code_vectors=code_vectors)
    wire.check_schema(schema)
    wire.check_vectors(manifest.item_vectors)  # what the aggregator checks on publish, before writing the file
    body = wire.encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(body)
    tmp.replace(out)
    return ItemTableResult(out, wire, len(body))
