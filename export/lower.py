"""Lowering a FedPA recommender to ExecuTorch (inference and training) and ONNX.

Each function returns the file's bytes and the :class:`ProgramSpec` that describes its calling
convention, so the manifest is written from the same facts the programs were built from.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Literal

import torch
from torch.export import Dim, ExportedProgram, export

from export.wrappers import (
    InferenceWrapper,
    WithLoss,
    drop_frozen_parameters,
    frozen_ios,
    frozen_names,
    item_vector_ios,
    personalisation_ios,
)
from fedpa.manifest import ProgramSpec, TensorIO
from fedpa.model import FedPARecommender, ParamGroup, fuse_layers, parameter_groups

__all__ = ["export_inference", "lower_inference", "lower_onnx", "lower_training", "toolchain_versions"]

log = logging.getLogger(__name__)


def _x_io(model: FedPARecommender) -> TensorIO:
    return TensorIO(name="x", shape=(-1, len(model.backbone.config.cardinalities)), dtype="int64", group="input")


def _inference_spec(model: FedPARecommender, file: str, runtime: Literal["executorch", "onnxruntime"],
                    max_batch: int | None) -> ProgramSpec:
    return ProgramSpec(
        file=file, runtime=runtime, kind="inference", max_batch=max_batch,
        inputs=(_x_io(model), *item_vector_ios(model), *personalisation_ios(model), *frozen_ios(model)),
        outputs=(TensorIO(name="logits", shape=(-1,), dtype="float32", group="output"),),
    )


def export_inference(model: FedPARecommender, *, max_batch: int, fused: bool = True) -> ExportedProgram:
    """``torch.export`` of the inference wrapper with a dynamic number of candidates.

    ``fused`` exports :class:`~fedpa.model.FusedFedPALayer` (same function, fewer ops) instead of
    tracing ``FedPALayer`` as written.
    """
    wrapper = InferenceWrapper((fuse_layers(model, form="program") if fused else copy.deepcopy(model)).eval())
    # example batch > 1 so export does not specialise the batch dimension to 1
    inputs = wrapper.example_inputs(min(8, max_batch))
    frozen = frozen_names(wrapper.model)
    drop_frozen_parameters(wrapper.model)
    batch = Dim("candidates", min=1, max=max_batch)
    extra = len(item_vector_ios(model))  # the item vector has the candidates' dimension too
    dynamic = ({0: batch}, *({0: batch},) * extra, *(None,) * (len(inputs) - 1 - extra))
    ep = export(wrapper, inputs, dynamic_shapes=(dynamic[0], dynamic[1:]), strict=False)
    _check_no_frozen_state(ep, {f"model.{n}": ParamGroup.FROZEN.value for n in frozen})
    return ep


def lower_inference(model: FedPARecommender, *, max_batch: int = 1024, file: str = "inference.pte",
                    fused: bool = True) -> tuple[bytes, ProgramSpec]:
    """ExecuTorch program with every supported op delegated to XNNPACK.

    ``force_non_static_weights_for_f32_linear`` lets XNNPACK take the matmuls whose weights are
    runtime inputs (the adapters, the gate and, since the backbone moved to
    ``backbone.safetensors``, the frozen layers too); without it they fall back to the portable
    kernels and ranking 256 candidates is ~40% slower.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    ep = export_inference(model, max_batch=max_batch, fused=fused)
    partitioners = [XnnpackPartitioner(force_non_static_weights_for_f32_linear=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = to_edge_transform_and_lower(ep, partitioner=partitioners).to_executorch()
    return program.buffer, _inference_spec(model, file, "executorch", max_batch)


def lower_onnx(model: FedPARecommender, *, max_batch: int = 1024, file: str = "inference.onnx",
               fused: bool = True) -> tuple[bytes, ProgramSpec]:
    """The same inference program as ONNX via the dynamo exporter (input names = tensor names).

    Per-node metadata (source stack traces) is stripped: it is a third of the file and says
    nothing a runtime needs.
    """
    ep = export_inference(model, max_batch=max_batch, fused=fused)
    spec = _inference_spec(model, file, "onnxruntime", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(ep, dynamo=True, input_names=[i.name for i in spec.inputs],
                                         output_names=["logits"], optimize=True, verbose=False)
    if onnx_program is None:  # only the legacy exporter (dynamo=False) writes to a file and returns None
        raise RuntimeError("torch.onnx.export returned no ONNX program")
    proto = onnx_program.model_proto
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        del value.metadata_props[:]
    del proto.metadata_props[:]
    proto.doc_string = ""
    return proto.SerializeToString(), spec


def lower_training(model: FedPARecommender, *, max_batch: int = 1024, file: str = "training.pte"
                   ) -> tuple[bytes, ProgramSpec]:
    """Joint forward+backward program for the personalisation tensors only.

    ``torch.export`` of ``WithLoss(model)`` → ``_export_forward_backward`` (gradients for every
    parameter that requires grad: exactly the personalisation tensors; the backbone and head are
    runtime inputs, which get none) → ExecuTorch. Its ``forward(x, y, *frozen)`` returns
    ``[loss, gradients..., parameters...]`` in the program's parameter order, recorded in the spec.
    """
    from executorch.exir import EdgeCompileConfig, to_edge
    from torch.export.experimental import _export_forward_backward

    trainable = copy.deepcopy(model).train()
    groups = parameter_groups(trainable)
    for g, params in groups.items():
        for p in params.values():
            p.requires_grad_(g != ParamGroup.FROZEN)
    roles = {n: g.value for g, params in groups.items() for n in params}
    shapes = {n: tuple(p.shape) for n, p in trainable.named_parameters()}
    wrapper = WithLoss(trainable)
    inputs = wrapper.example_inputs(min(8, max_batch))  # (x, y[, item_vector])
    batch = Dim("batch", min=1, max=max_batch)
    frozen_inputs, frozen_specs = wrapper.frozen_inputs(), frozen_ios(trainable)
    drop_frozen_parameters(wrapper)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # forward(x, y, *rest): rest = ([item_vector,] *frozen); only the rows' tensors are dynamic
        rest = (*({0: batch},) * (len(inputs) - 2), *(None,) * len(frozen_inputs))
        ep = export(wrapper, (*inputs, *frozen_inputs), dynamic_shapes=({0: batch}, {0: batch}, rest), strict=False)
        ep = _export_forward_backward(ep)
        order = [s.target for s in ep.graph_signature.output_specs if s.kind.name == "GRADIENT_TO_PARAMETER"]
        _check_no_frozen_state(ep, roles)
        program = to_edge(ep, compile_config=EdgeCompileConfig(_check_ir_validity=False)).to_executorch()
    frozen = [name for name in order if roles[name] == ParamGroup.FROZEN.value]
    if frozen:  # would mean the backbone trains on the device
        raise RuntimeError(f"training program would update frozen tensors {frozen[:3]}")
    spec = ProgramSpec(
        file=file, runtime="executorch", kind="training", max_batch=max_batch,
        inputs=(_x_io(trainable), TensorIO(name="y", shape=(-1,), dtype="float32", group="label"),
                *item_vector_ios(trainable), *frozen_specs),
        outputs=(
            TensorIO(name="loss", shape=(), dtype="float32", group="loss"),
            *(TensorIO(name=f"{p}.grad", shape=shapes[p], dtype="float32", group=roles[p]) for p in order),
            *(TensorIO(name=p, shape=shapes[p], dtype="float32", group=roles[p]) for p in order),
        ),
    )
    return program.buffer, spec


def _check_no_frozen_state(ep: ExportedProgram, roles: dict[str, str]) -> None:
    """Refuse a program that still holds a frozen tensor as its own state (a second copy of the backbone)."""
    held = [n for n in ep.state_dict if roles.get(n) == ParamGroup.FROZEN.value]
    if held:
        raise RuntimeError(f"program holds frozen tensors {held[:3]} as state; they must be inputs")


def toolchain_versions(onnx_bytes: bytes | None = None) -> dict[str, str]:
    """Versions of the tools that wrote the programs (shown by ``fedpa-export inspect``)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"torch": str(torch.__version__)}
    for package in ("executorch", "onnx", "onnxscript"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    if onnx_bytes is not None:
        import onnx

        proto = onnx.load_from_string(onnx_bytes)
        out["onnx_opset"] = str(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))
        out["onnx_ir_version"] = str(proto.ir_version)
    return out
