"""The bundle's exported programs as a device uses them: train and score through the runtime.

Devices never run eager PyTorch (docs/design.md §6): training goes through the bundle's training ``.pte``
(ExecuTorch), scoring through the inference ``.pte`` or ``.onnx``, both via ``fedpa.runtime``.
Loaded programs are immutable and shared; the mutable per-call state (a trainer's tensors) lives
in one instance per thread, so a fleet of simulated devices can share one loaded bundle.

Usage: ``programs = LocalPrograms.open(bundle_dir); new, loss, skipped = programs.train(t, x, y, batches, lr=0.05)``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from fedpa.errors import ConfigError
from fedpa.manifest import Manifest

if TYPE_CHECKING:
    from fedpa.runtime import Bundle, Scorer, Trainer
    from fedpa.runtime.bundle import Backend

__all__ = ["LocalPrograms"]


class LocalPrograms:
    """A verified bundle's programs plus per-thread trainers and scorers."""

    def __init__(self, bundle: Bundle, path: Path) -> None:
        self.bundle = bundle
        self.path = path
        self.manifest: Manifest = bundle.manifest
        self._local = threading.local()
        # ExecuTorch's loader is not safe to enter from several threads at once (it deadlocks on
        # the import lock); loading is rare, so it is serialised, running is not.
        self._load_lock = threading.Lock()
        self._private_init: dict[str, np.ndarray] | None = None

    @classmethod
    def open(cls, bundle_dir: str | Path) -> LocalPrograms:
        """Open and verify (sha256 of every file) a bundle folder."""
        from fedpa.runtime import Bundle

        path = Path(bundle_dir)
        return cls(Bundle.open(path), path)

    def private_init(self) -> dict[str, np.ndarray]:
        """The bundle's initial private adapter (by parameter name): a new device's starting point."""
        if self._private_init is None:
            self._private_init = self.bundle.private_init()
        return {k: v.copy() for k, v in self._private_init.items()}

    @property
    def max_batch(self) -> int | None:
        """The training program's largest batch (ExecuTorch plans its memory for it)."""
        return self.manifest.programs["training"].max_batch

    def _trainer(self, lr: float) -> Trainer:
        cache: dict[float, Trainer] = self._local.__dict__.setdefault("trainers", {})
        if lr not in cache:
            with self._load_lock:
                cache[lr] = self.bundle.trainer(lr=lr)
        return cache[lr]

    def _scorer(self, backend: str) -> Scorer:
        cache: dict[str, Scorer] = self._local.__dict__.setdefault("scorers", {})
        if backend not in cache:
            with self._load_lock:  # a CLI flag's string: Bundle.scorer refuses any other than the Backend values
                cache[backend] = self.bundle.scorer(backend=cast("Backend", backend))
        return cache[backend]

    def train(self, tensors: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
              batches: Sequence[np.ndarray], *, lr: float, item_vector: np.ndarray | None = None
              ) -> tuple[dict[str, np.ndarray], float, int]:
        """Plain SGD over ``batches`` (row indices) from ``tensors``.

        ``item_vector`` ``[N, d]`` (rows as ``x``) for a bundle whose programs take item vectors.
        Returns the trained tensors, the mean loss of the applied steps and the number of steps
        skipped because their loss or gradient was not finite (``Trainer.step``).
        """
        trainer = self._trainer(lr)
        if self.max_batch is not None and any(len(b) > self.max_batch for b in batches):
            raise ConfigError(f"local batch size above the training program's max_batch {self.max_batch}")
        trainer.write(dict(tensors))
        skipped_before = trainer.skipped_steps
        losses = [float(trainer.step(x[idx], y[idx], None if item_vector is None else item_vector[idx]))
                  for idx in batches]
        trained = {k: np.array(v, np.float32, copy=True) for k, v in trainer.read().items()}
        applied = [v for v in losses if np.isfinite(v)]
        return trained, float(np.mean(applied)) if applied else float("nan"), trainer.skipped_steps - skipped_before

    def score(self, x: np.ndarray, personalisation: Mapping[str, np.ndarray], *, backend: str = "pte",
              item_vector: np.ndarray | None = None) -> np.ndarray:
        """Logits ``[N]`` of encoded rows ``x`` (and their item vectors) with the given personalisation tensors."""
        return np.asarray(self._scorer(backend).score(x, dict(personalisation), item_vector),
                          np.float32).reshape(-1)
