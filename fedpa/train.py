"""Pre-training the foundation model and distilling the on-device student (docs/design.md §2).

Both train on *open* users only, keep the epoch with the best open users' validation GAUC (never
training metrics; at least ``min_epochs``, then ``patience``), and report FM-only metrics on the
private users' test split — the rows the federated methods must beat.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fedpa.errors import ConfigError
from fedpa.metrics import evaluate
from fedpa.model import AdapterConfig, Backbone, BackboneConfig, student_config, teacher_config

if TYPE_CHECKING:
    from fedpa.data import Dataset, FeatureSchema, Interactions

__all__ = [
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "adapter_config_for",
    "default_student_config",
    "distill",
    "load_checkpoint",
    "predict",
    "pretrain",
    "save_checkpoint",
    "train_from_scratch",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30  # an upper bound; early stopping usually ends sooner
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-4  # 1e-3 tied on open-user validation GAUC (docs/RESULTS.md §9.2)
    # model selection and early stopping; chosen on open-user validation GAUC over 3 KuaiRand seeds
    # (docs/RESULTS.md §9.2, benchmarks/bench_recipe.py): GAUC, the metric we claim, not pooled AUC
    patience: int = 5  # epochs without a better open-validation score before stopping
    select: str = "gauc"  # the open-validation metric that keeps the best epoch and stops: auc | gauc
    min_epochs: int = 5  # never stop before this many epochs (a lucky first epoch must not end training)
    # on each epoch without a better score: restore the best weights and multiply lr by this (1: off)
    decay: float = 1.0
    # exponential moving average of the weights per step (0: off); the averaged weights are what is
    # scored and kept — an average over many steps varies less with the last batches than the raw ones
    ema: float = 0.0
    distill_alpha: float = 0.5  # weight of the label loss; 1 - alpha on the teacher's soft targets
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.patience < 1 or self.min_epochs < 1:
            raise ConfigError(f"invalid training config {self}")
        if self.select not in ("auc", "gauc") or not 0 < self.decay <= 1 or not 0 <= self.ema < 1:
            raise ConfigError(f"need select in (auc, gauc), 0 < decay ≤ 1 and 0 ≤ ema < 1, got {self}")
        if not 0 <= self.distill_alpha <= 1 or self.temperature <= 0:
            raise ConfigError(f"need 0 ≤ distill_alpha ≤ 1 and temperature > 0, got {self}")


@dataclass
class TrainResult:
    model: Backbone
    metrics: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, *, batch_size: int = 8192) -> np.ndarray:
    """Logits for encoded rows ``x`` ``[N, F]``, in eval mode."""
    model.eval()
    out = [model(torch.from_numpy(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _evaluate(model: Backbone, split: Interactions) -> dict[str, float]:
    return evaluate(split.user, split.y, predict(model, split.x))


Progress = Callable[[str], None]  # one line per epoch, for a CLI's status line (training can take a while)


def _fit(model: Backbone, ds: Dataset, loss_fn: Callable[[Tensor, Tensor, Tensor], Tensor],
         config: TrainConfig, seed: int, tag: str, progress: Progress | None = None) -> TrainResult:
    """Mini-batch Adam on open train rows; keeps the epoch with the best open-validation ``config.select``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = ds.open_train
    x_all, y_all = torch.from_numpy(train.x), torch.from_numpy(train.y)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    averaged = copy.deepcopy(model) if config.ema > 0 else model  # what is scored and kept
    best_score, best_state, best_epoch, stale = -2.0, None, 0, 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.from_numpy(rng.permutation(len(train)))
        total = 0.0
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = loss_fn(model(x_all[idx]), y_all[idx], idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if averaged is not model:
                with torch.no_grad():
                    for a, p in zip(averaged.parameters(), model.parameters(), strict=True):
                        a.lerp_(p, 1 - config.ema)
            total += loss.item() * len(idx)
        val = _evaluate(averaged, ds.open_val)
        score = float(np.nan_to_num(val[config.select], nan=-1.0))
        history.append({"epoch": epoch, "train_loss": total / len(order), "val_auc": val["auc"],
                        "val_gauc": val["gauc"], "lr": optimizer.param_groups[0]["lr"]})
        log.info("%s epoch %d loss %.4f open-val AUC %.4f GAUC %.4f", tag, epoch, total / len(order), val["auc"],
                 val["gauc"])
        if progress is not None:
            progress(f"{tag}: epoch {epoch}/{config.epochs} (at most; early stopping), loss {total / len(order):.4f}, "
                     f"open-val AUC {val['auc']:.4f} GAUC {val['gauc']:.4f}")
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = {k: v.clone() for k, v in averaged.state_dict().items()}
            continue
        stale += 1
        if stale >= config.patience and epoch >= config.min_epochs:
            break
        if config.decay < 1 and best_state is not None:  # step back to the best weights with a smaller step
            model.load_state_dict(best_state)
            averaged.load_state_dict(best_state)
            for group in optimizer.param_groups:
                group["lr"] *= config.decay
    assert best_state is not None  # at least one epoch ran
    model.load_state_dict(best_state)
    model.eval()
    metrics = {
        "kind": tag,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
        "open_val": _evaluate(model, ds.open_val),
        "private_val": _evaluate(model, ds.private_val),
        "private_test": _evaluate(model, ds.private_test),
        "history": history,
    }
    return TrainResult(model=model, metrics=metrics)


def _label_loss(logits: Tensor, y: Tensor, _idx: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, y)


def default_student_config(schema: FeatureSchema) -> BackboneConfig:
    """The student architecture for ``schema``: every column embedded at the full width.

    The narrow signal-column table (``student_config(..., n_signal_features=...)``) shrinks the bundle
    by ~74 KB but cost 0.03 GAUC on the demo's synthetic data and 0.002–0.004 validation GAUC on
    KuaiRand (docs/RESULTS.md §2b), and the bundle still misses 300 KB with it: quality wins.
    """
    return student_config(schema.cardinalities, len(schema.user_feature_positions))


def pretrain(ds: Dataset, config: BackboneConfig | None = None, *, train: TrainConfig | None = None,
             seed: int = 0, progress: Progress | None = None) -> TrainResult:
    """Train the foundation model (teacher) on open users. Usage: ``teacher = pretrain(ds).model``."""
    config = config or teacher_config(ds.schema.cardinalities, len(ds.schema.user_feature_positions))
    torch.manual_seed(seed)
    return _fit(Backbone(config), ds, _label_loss, train or TrainConfig(), seed, "teacher", progress)


def train_from_scratch(ds: Dataset, config: BackboneConfig | None = None, *, train: TrainConfig | None = None,
                       seed: int = 0, progress: Progress | None = None) -> TrainResult:
    """The student architecture trained on labels alone — the distillation baseline."""
    config = config or default_student_config(ds.schema)
    torch.manual_seed(seed)
    return _fit(Backbone(config), ds, _label_loss, train or TrainConfig(), seed, "student-scratch", progress)


def distill(ds: Dataset, teacher: Backbone, config: BackboneConfig | None = None, *,
            train: TrainConfig | None = None, seed: int = 0, progress: Progress | None = None) -> TrainResult:
    """Knowledge distillation: ``α·BCE(y, σ(s)) + (1-α)·BCE(σ(t/T), σ(s/T))·T²`` on open users."""
    train = train or TrainConfig()
    config = config or default_student_config(ds.schema)
    if config.cardinalities != teacher.config.cardinalities:
        raise ConfigError("student and teacher must share the feature schema (cardinalities differ)")
    teacher_logits = torch.from_numpy(predict(teacher, ds.open_train.x))
    alpha, temp = train.distill_alpha, train.temperature

    def loss_fn(logits: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        soft = torch.sigmoid(teacher_logits[idx] / temp)
        kd = F.binary_cross_entropy_with_logits(logits / temp, soft) * temp**2
        return alpha * F.binary_cross_entropy_with_logits(logits, y) + (1 - alpha) * kd

    torch.manual_seed(seed)
    return _fit(Backbone(config), ds, loss_fn, train, seed, "student-distilled", progress)


def adapter_config_for(schema: FeatureSchema, **overrides: Any) -> AdapterConfig:
    """Adapter settings whose groups are the schema's grouping attributes."""
    cards = schema.cardinalities
    base: dict[str, Any] = {
        "group_attributes": tuple(schema.group_attributes),
        "group_cardinalities": tuple(cards[p] for p in schema.group_positions),
    }
    base.update(overrides)
    return AdapterConfig(**base)


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    model: Backbone
    schema: FeatureSchema
    kind: str
    metrics: dict[str, Any]


def save_checkpoint(path: str | Path, model: Backbone, schema: FeatureSchema, *, kind: str,
                    metrics: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({
        "format": "fedpa-checkpoint/1",
        "kind": kind,
        # JSON strings keep the file loadable with weights_only=True (no pickled numpy scalars)
        "config": json.dumps(model.config.to_dict()),
        "schema": json.dumps(schema.to_dict()),
        "state_dict": model.state_dict(),
        "metrics": json.dumps(metrics or {}, default=float),
    }, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint, refusing one whose weights do not fit its declared architecture."""
    from fedpa.data import FeatureSchema

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ConfigError(f"{path}: not a readable FedPA checkpoint ({exc})") from exc
    found_format = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
    if found_format != "fedpa-checkpoint/1":
        raise ConfigError(f"{path}: not a FedPA checkpoint (format {found_format!r})")
    config = BackboneConfig.from_dict(json.loads(raw["config"]))
    schema = FeatureSchema.from_dict(json.loads(raw["schema"]))
    if tuple(schema.cardinalities) != config.cardinalities:
        raise ConfigError(f"{path}: feature schema cardinalities {schema.cardinalities} "
                          f"do not match the model's {config.cardinalities}")
    model = Backbone(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in raw["state_dict"].items()}
    if expected != found:
        diff = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        raise ConfigError(f"{path}: weights do not match architecture {config}: "
                          f"{[(k, found.get(k), expected.get(k)) for k in diff[:3]]} (found, expected)")
    model.load_state_dict(raw["state_dict"])
    model.eval()
    return Checkpoint(model=model, schema=schema, kind=raw["kind"], metrics=json.loads(raw["metrics"]))
