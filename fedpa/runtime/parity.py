"""Replaying a bundle's golden vectors through its programs (what ``fedpa-export verify`` runs).

The same check an Android build runs against ``golden.json``; here with the Python ExecuTorch
and onnxruntime bindings. Each comparison is ``max |actual - expected| - rtol·|expected| ≤ atol``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedpa.runtime.bundle import Backend, Bundle

__all__ = ["ParityCheck", "ParityReport", "check_golden"]


@dataclass(frozen=True)
class ParityCheck:
    """One comparison: the worst absolute error and whether it is within tolerance."""

    name: str
    max_abs_error: float
    ok: bool


@dataclass
class ParityReport:
    checks: list[ParityCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def failures(self) -> list[ParityCheck]:
        return [c for c in self.checks if not c.ok]


def _compare(report: ParityReport, name: str, actual: np.ndarray, expected: np.ndarray,
             atol: float, rtol: float) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        report.checks.append(ParityCheck(name, float("inf"), False))
        return
    err = np.abs(actual - expected)
    ok = bool(np.all(err <= atol + rtol * np.abs(expected)))
    report.checks.append(ParityCheck(name, float(err.max()) if err.size else 0.0, ok))


def check_golden(bundle: Bundle, *, backends: tuple[Backend, ...] = ("pte", "onnx"), training: bool = True
                 ) -> ParityReport:
    """Run every golden inference case on each backend and the golden SGD step on the training program."""
    golden = bundle.golden()
    report = ParityReport()
    for backend in backends:
        scorer = bundle.scorer(backend)
        for i, case in enumerate(golden.cases):
            logits = scorer.score(case.x, golden.personalisation, case.item_vector)
            _compare(report, f"{backend} logits, case {i} (N={len(case.x)})", logits, case.logits,
                     golden.atol, golden.rtol)
    if training:
        t = golden.training
        trainer = bundle.trainer(lr=t.lr)
        trainer.write(golden.personalisation)
        loss = trainer.step(t.x, t.y, t.item_vector)
        _compare(report, "training loss", np.array([loss]), np.array([t.loss]), golden.atol, golden.rtol)
        grads = trainer.gradients()
        for name, expected in t.gradients.items():
            _compare(report, f"gradient {name}", grads.get(name, np.full(1, np.nan)), expected,
                     golden.atol, golden.rtol)
        updated = trainer.read()
        for name, start in golden.personalisation.items():
            _compare(report, f"SGD update {name}", updated[name], start - t.lr * t.gradients[name],
                     golden.atol, golden.rtol)
        after = trainer.loss(t.x, t.y, t.item_vector)
        _compare(report, "loss after the step", np.array([after]), np.array([t.loss_after]), golden.atol, golden.rtol)
    return report
