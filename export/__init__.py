"""Build-time export: lower a trained FedPA student to ExecuTorch and ONNX and package a bundle.

May import ``torch.export`` and ExecuTorch's compiler; what it writes is read back by
``fedpa.runtime`` (which does not). Usage::

    from export import build_bundle
    result = build_bundle(student, schema, "bundles/kuaisar-r", model_id="kuaisar-r")

The public names are resolved on first use (PEP 562) so that ``fedpa-export --help``, which
imports ``export.cli``, does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from export.bundle import BuildResult, build_bundle, check_architecture
    from export.lower import lower_inference, lower_onnx, lower_training
    from export.source import StudentSource, resolve_student
    from export.verify import VerifyResult, summarise, verify_bundle
    from export.wrappers import InferenceWrapper, WithLoss, personalisation_ios, personalisation_names

_HOME = {
    "BuildResult": "bundle", "build_bundle": "bundle", "check_architecture": "bundle",
    "lower_inference": "lower", "lower_onnx": "lower", "lower_training": "lower",
    "StudentSource": "source", "resolve_student": "source",
    "VerifyResult": "verify", "summarise": "verify", "verify_bundle": "verify",
    "InferenceWrapper": "wrappers", "WithLoss": "wrappers", "personalisation_ios": "wrappers",
    "personalisation_names": "wrappers",
}

__all__ = [
    "BuildResult",
    "InferenceWrapper",
    "StudentSource",
    "VerifyResult",
    "WithLoss",
    "build_bundle",
    "check_architecture",
    "lower_inference",
    "lower_onnx",
    "lower_training",
    "personalisation_ios",
    "personalisation_names",
    "resolve_student",
    "summarise",
    "verify_bundle",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    return getattr(importlib.import_module(f"export.{_HOME[name]}"), name)
