"""Runtime-facing bundle API: open and verify a bundle, score candidates, train on device.

Loads only exported files (``.pte`` through ExecuTorch's runtime, ``.onnx`` through onnxruntime),
never ``torch.export``; the edge client and the tests use it, and ``export/`` builds what it reads.

Usage::

    from fedpa.runtime import Bundle
    bundle = Bundle.open("bundle/")
    tensors = bundle.personalisation(bundle.groups_of(x[0]))
    logits = bundle.scorer("pte").score(x, tensors)
    trainer = bundle.trainer(lr=0.05); trainer.write(tensors); trainer.step(x, y)
"""

from fedpa.runtime.bundle import (
    GOLDEN_FILE,
    INFERENCE_ONNX,
    INFERENCE_PTE,
    PRIVATE_INIT_FILE,
    PROGRAM_KEYS,
    REQUIRED_FILES,
    SHARED_STATE_FILE,
    TRAINING_PTE,
    Bundle,
)
from fedpa.runtime.features import FeatureEncoder, schema_differences
from fedpa.runtime.golden import Golden, GoldenCase, GoldenTraining, read_golden, write_golden
from fedpa.runtime.parity import ParityCheck, ParityReport, check_golden
from fedpa.runtime.programs import BoundScorer, OnnxScorer, PteScorer, Scorer, Trainer, check_codes

__all__ = [
    "GOLDEN_FILE",
    "INFERENCE_ONNX",
    "INFERENCE_PTE",
    "PRIVATE_INIT_FILE",
    "PROGRAM_KEYS",
    "REQUIRED_FILES",
    "SHARED_STATE_FILE",
    "TRAINING_PTE",
    "BoundScorer",
    "Bundle",
    "FeatureEncoder",
    "Golden",
    "GoldenCase",
    "GoldenTraining",
    "OnnxScorer",
    "ParityCheck",
    "ParityReport",
    "PteScorer",
    "Scorer",
    "Trainer",
    "check_codes",
    "check_golden",
    "read_golden",
    "schema_differences",
    "write_golden",
]
