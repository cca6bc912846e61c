"""Build-time export: lower a trained FedPA student to ExecuTorch and ONNX and package a bundle.

May import ``torch.export`` and ExecuTorch's compiler; what it writes is read back by
``fedpa.runtime`` (which does not). Usage::

    from export import build_bundle
    result = build_bundle(student, schema, "bundles/kuaisar-r", model_id="kuaisar-r")

The public names are resolved on first use (PEP 562) so that ``fedpa-export --help``, which
imports ``export.cli``, does not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpa.lazy import lazy_exports

if TYPE_CHECKING:
    from export.bundle import BuildResult, build_bundle, check_architecture
    from export.lower import lower_inference, lower_onnx, lower_training
    from export.source import StudentSource, resolve_student
    from export.verify import VerifyResult, summarise, verify_bundle
    from export.wrappers import InferenceWrapper, WithLoss, personalisation_ios, personalisation_names

__getattr__, __dir__ = lazy_exports(__name__, {
    "bundle": ("BuildResult", "build_bundle", "check_architecture"),
    "lower": ("lower_inference", "lower_onnx", "lower_training"),
    "source": ("StudentSource", "resolve_student"),
    "verify": ("VerifyResult", "summarise", "verify_bundle"),
    "wrappers": ("InferenceWrapper", "WithLoss", "personalisation_ios", "personalisation_names"),
})

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

