"""Where the bundle's student comes from: a checkpoint, or training on a dataset (core's fedpa.train).

* ``student=CKPT``: used as is (a dataset, if given, must have the same feature schema);
* ``teacher=CKPT`` + dataset: the student is distilled from that teacher (a checkpoint whose
  ``kind`` is already ``student`` is used as is);
* dataset alone: pre-train a teacher, then distil.

Every failure is a :class:`BundleError` naming the file or the mismatch, never a traceback from
deep inside torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedpa.errors import BundleError, ConfigError, DataError
from fedpa.runtime.features import schema_differences

if TYPE_CHECKING:
    from fedpa.data import Dataset, FeatureSchema
    from fedpa.model import Backbone
    from fedpa.train import Checkpoint

__all__ = ["StudentSource", "resolve_student"]


@dataclass
class StudentSource:
    """The student to export, its schema, and the metrics the manifest will carry."""

    model: Backbone
    schema: FeatureSchema
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: Dataset | None = None


def _load(path: Path, role: str) -> Checkpoint:
    from fedpa.train import load_checkpoint

    try:
        return load_checkpoint(path)
    except ConfigError as exc:  # missing, unreadable, or weights not fitting the declared architecture
        raise BundleError(f"{role} checkpoint: {exc}") from exc


def _same_schema(checkpoint_schema: FeatureSchema, ds: Dataset, path: Path) -> None:
    diffs = schema_differences(checkpoint_schema, ds.schema)
    if diffs:
        raise BundleError(f"feature schema mismatch between {path} and the dataset: " + "; ".join(diffs))


def _metrics(m: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers only (the training history would bloat the manifest)."""
    return {k: v for k, v in m.items() if k != "history"}


def resolve_student(*, student: str | Path | None = None, teacher: str | Path | None = None,
                    dataset: str | None = None, data_dir: str | Path | None = None,
                    dataset_options: Mapping[str, Any] | None = None, split: str = "attribute", seed: int = 0,
                    progress: Callable[[str], None] | None = None) -> StudentSource:
    """Load or train the student per the module's rules.

    Usage: ``resolve_student(teacher="teacher.pt", dataset="kuaisar-r", data_dir="data/kuaisar-r")``.
    """
    say = progress or (lambda _msg: None)
    if student is not None and teacher is not None:
        raise BundleError("give either a student or a teacher checkpoint, not both")
    ds = None
    if dataset is not None:
        from fedpa.data import load_dataset, split_rule

        say(f"loading dataset {dataset}")
        try:
            ds = load_dataset(dataset, data_dir, split=split_rule(split), seed=seed, **dict(dataset_options or {}))
        except (ConfigError, DataError) as exc:
            raise BundleError(f"dataset {dataset!r}: {exc}") from exc

    if student is not None:
        ckpt = _load(Path(student), "student")
        if ds is not None:
            _same_schema(ckpt.schema, ds, Path(student))
        return StudentSource(ckpt.model, ckpt.schema, {"student": _metrics(ckpt.metrics)}, ds)

    from fedpa.train import distill, pretrain

    metrics: dict[str, Any] = {}
    teacher_ckpt = _load(Path(teacher), "teacher") if teacher is not None else None
    if teacher_ckpt is not None:
        if ds is not None:
            _same_schema(teacher_ckpt.schema, ds, Path(str(teacher)))
        if teacher_ckpt.kind.startswith("student"):
            say(f"{teacher} is already a student checkpoint: exporting it without distillation")
            return StudentSource(teacher_ckpt.model, teacher_ckpt.schema,
                                 {"student": _metrics(teacher_ckpt.metrics)}, ds)
    if ds is None:
        raise BundleError("distilling a student from a teacher needs a dataset (--dataset/--data-dir)"
                          if teacher_ckpt is not None else
                          "nothing to export: give a student or teacher checkpoint, or a dataset")
    if teacher_ckpt is not None:
        teacher_model, metrics["teacher"] = teacher_ckpt.model, _metrics(teacher_ckpt.metrics)
    else:
        say("pre-training the teacher on open users")
        result = pretrain(ds, seed=seed, progress=progress)
        teacher_model, metrics["teacher"] = result.model, _metrics(result.metrics)

    say("distilling the student from the teacher")
    try:
        result = distill(ds, teacher_model, seed=seed, progress=progress)
    except ConfigError as exc:  # teacher and dataset disagree on the features
        raise BundleError(f"cannot distil: {exc}") from exc
    metrics["student"] = _metrics(result.metrics)
    return StudentSource(result.model, ds.schema, metrics, ds)
