"""Running a bundle's exported programs: scoring over ``.pte``/``.onnx`` and on-device SGD.

Only runtimes are imported here (ExecuTorch's runtime and training pybindings, onnxruntime), never
``torch.export``: this is what a phone-side client runs. ExecuTorch's Python bindings exchange
``torch.Tensor`` objects, so torch is needed as a tensor container, and arrays cross the boundary
with ``torch.from_numpy`` (no copy).

A bundle whose programs take the candidates' item vectors (``manifest.item_vectors``; the input
``item_vector [N, d]`` of group ``"item"``) needs them with every call: ``score(x, tensors,
item_vector=rows.vectors())``, ``step(x, y, item_vector)`` (:func:`check_item_vector`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import numpy as np

from fedpa.errors import BundleError
from fedpa.manifest import PERSONALISATION_GROUPS, ProgramSpec, TensorIO

if TYPE_CHECKING:  # torch is imported where a program runs (a tensor container for ExecuTorch)
    import torch

__all__ = ["BoundScorer", "OnnxScorer", "PteScorer", "Scorer", "Trainer", "check_codes", "check_item_vector",
           "item_vector_spec"]

Prepared = TypeVar("Prepared")


def check_codes(x: np.ndarray, cardinalities: Sequence[int]) -> np.ndarray:
    """``x`` as a C-contiguous int64 ``[N, F]`` array of valid codes, else a BundleError.

    Why: an out-of-range code would index past an embedding table inside a compiled program,
    which ExecuTorch reports as an opaque failure (or worse); catching it here names the column.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != len(cardinalities):
        raise BundleError(f"x must have shape [N, {len(cardinalities)}], got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise BundleError("x must hold at least one row")
    if x.dtype.kind not in "iu":
        raise BundleError(f"x must hold integer codes, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.int64)
    # one pass: viewed as unsigned, a negative code becomes huge and fails the same comparison
    if (x.view(np.uint64) >= np.asarray(cardinalities, dtype=np.uint64)).any():
        bad = (x < 0) | (x >= np.asarray(cardinalities, dtype=np.int64))
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise BundleError(f"x[{row}, {col}] = {x[row, col]} out of range 0..{cardinalities[col] - 1}")
    return x


def item_vector_spec(spec: ProgramSpec) -> TensorIO | None:
    """The program's ``item_vector`` input (group ``"item"``), or None when it embeds the item code itself."""
    return next((s for s in spec.inputs if s.group == "item"), None)


def check_item_vector(item_vector: np.ndarray | None, n: int, spec: TensorIO | None) -> np.ndarray | None:
    """``item_vector`` as a C-contiguous float32 ``[n, d]`` array for a program that takes one, else a BundleError."""
    if spec is None:
        if item_vector is not None:
            raise BundleError("this bundle's programs embed the item code themselves: pass no item_vector")
        return None
    if item_vector is None:
        raise BundleError(f"this bundle's programs take the candidates' item vectors: pass item_vector "
                          f"[{n}, {spec.shape[-1]}] (ItemRows.vectors() from the item table)")
    v = np.ascontiguousarray(item_vector, dtype=np.float32)
    if v.shape != (n, spec.shape[-1]):
        raise BundleError(f"item_vector must have shape [{n}, {spec.shape[-1]}], got {tuple(v.shape)}")
    if not np.isfinite(v).all():
        raise BundleError("item_vector contains NaN or infinite values")
    return v


def _ordered(personalisation: Mapping[str, np.ndarray], specs: Sequence[TensorIO], what: str = "personalisation"
             ) -> list[np.ndarray]:
    """The ``what`` tensors in program-input order, validated by name and shape."""
    missing = [s.name for s in specs if s.name not in personalisation]
    unknown = sorted(set(personalisation) - {s.name for s in specs})
    if missing or unknown:
        raise BundleError(f"{what} tensors: missing {missing[:5]}, unknown {unknown[:5]}")
    out = []
    for s in specs:
        a = np.ascontiguousarray(personalisation[s.name], dtype=np.float32)
        if a.shape != tuple(s.shape):
            raise BundleError(f"{what} tensor {s.name!r}: shape {a.shape} != {tuple(s.shape)}")
        out.append(a)
    return out


def _frozen_inputs(spec: ProgramSpec, frozen: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The program's ``"frozen"`` inputs (backbone and head) from ``frozen``, checked once when a program loads.

    Why once: every program takes the backbone as inputs (the bundle carries it once, in
    ``backbone.safetensors``); converting it per call would cost as much as a small program run.
    Copied, so later changes to the caller's arrays cannot leak into the program.
    """
    return [a.copy() for a in _ordered(frozen, [t for t in spec.inputs if t.group == "frozen"], "frozen")]


class Scorer(Protocol):
    """Ranks candidates for one user: codes ``[N, F]`` and personalisation tensors → logits ``[N]``."""

    names: tuple[str, ...]

    def score(self, x: np.ndarray, personalisation: Mapping[str, np.ndarray],
              item_vector: np.ndarray | None = None) -> np.ndarray: ...

    def bind(self, personalisation: Mapping[str, np.ndarray]) -> BoundScorer: ...


class BoundScorer:
    """A scorer with one user's personalisation checked and converted once.

    Why: a device ranks many requests between two training rounds with the same tensors; binding
    moves their validation and conversion (about as long as the program itself for 20 small
    tensors) out of the per-request path. Usage: ``rank = scorer.bind(tensors); logits = rank.score(x)``.
    """

    def __init__(self, run: Callable[[np.ndarray, np.ndarray | None], np.ndarray], cardinalities: tuple[int, ...],
                 max_batch: int | None, item_vector: TensorIO | None = None) -> None:
        self._run = run
        self._cardinalities = cardinalities
        self._max_batch = max_batch
        self._item_vector = item_vector

    def score(self, x: np.ndarray, item_vector: np.ndarray | None = None) -> np.ndarray:
        """Logits for every row of ``x``; batches above the program's ``max_batch`` run in chunks."""
        x = check_codes(x, self._cardinalities)
        v = check_item_vector(item_vector, len(x), self._item_vector)
        step = self._max_batch or len(x)
        parts = [self._run(x[i : i + step], None if v is None else v[i : i + step]) for i in range(0, len(x), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class _ScorerBase(Generic[Prepared]):
    """What both runtimes share; ``Prepared`` is a runtime's converted form of the personalisation tensors."""

    def __init__(self, spec: ProgramSpec, cardinalities: Sequence[int], frozen: Mapping[str, np.ndarray]) -> None:
        self.spec = spec
        self.cardinalities = tuple(cardinalities)
        self._item_vector = item_vector_spec(spec)
        self._tensor_specs = tuple(t for t in spec.inputs if t.group in PERSONALISATION_GROUPS)
        self._frozen = _frozen_inputs(spec, frozen)
        self.names = tuple(s.name for s in self._tensor_specs)
        self.max_batch = spec.max_batch

    def bind(self, personalisation: Mapping[str, np.ndarray]) -> BoundScorer:
        """Validate and convert the tensors once (copied: later changes to the arrays do not leak in)."""
        tensors = [a.copy() for a in _ordered(personalisation, self._tensor_specs)]
        prepared = self._prepare(tensors)
        return BoundScorer(lambda x, v: self._run(x, v, prepared), self.cardinalities, self.max_batch,
                           self._item_vector)

    def score(self, x: np.ndarray, personalisation: Mapping[str, np.ndarray],
              item_vector: np.ndarray | None = None) -> np.ndarray:
        """Logits for every row of ``x`` under these personalisation tensors (by parameter name)."""
        return self.bind(personalisation).score(x, item_vector)

    def _prepare(self, tensors: list[np.ndarray]) -> Prepared:
        raise NotImplementedError

    def _run(self, x: np.ndarray, item_vector: np.ndarray | None, prepared: Prepared) -> np.ndarray:
        raise NotImplementedError


class PteScorer(_ScorerBase["list[torch.Tensor]"]):
    """The XNNPACK-lowered ExecuTorch inference program, fed the bundle's frozen tensors (``Bundle.frozen``)."""

    def __init__(self, path: Path, spec: ProgramSpec, cardinalities: Sequence[int],
                 frozen: Mapping[str, np.ndarray]) -> None:
        super().__init__(spec, cardinalities, frozen)
        import torch
        from executorch.runtime import Runtime

        self._torch = torch
        self._frozen_t = [torch.from_numpy(a) for a in self._frozen]
        try:
            self._method = Runtime.get().load_program(Path(path)).load_method("forward")
        except (RuntimeError, ValueError) as exc:
            raise BundleError(f"{path}: ExecuTorch cannot load the inference program ({exc})") from exc

    def _prepare(self, tensors: list[np.ndarray]) -> list[torch.Tensor]:
        return [*(self._torch.from_numpy(t) for t in tensors), *self._frozen_t]

    def _run(self, x: np.ndarray, item_vector: np.ndarray | None, prepared: list[torch.Tensor]) -> np.ndarray:
        vector = [] if item_vector is None else [self._torch.from_numpy(item_vector)]
        logits: np.ndarray = self._method.execute([self._torch.from_numpy(x), *vector, *prepared])[0].numpy().copy()
        return logits


class OnnxScorer(_ScorerBase[dict[str, np.ndarray]]):
    """The same program as ONNX, for runtimes other than ExecuTorch (onnxruntime here)."""

    def __init__(self, path: Path, spec: ProgramSpec, cardinalities: Sequence[int], frozen: Mapping[str, np.ndarray],
                 *, threads: int = 1) -> None:
        super().__init__(spec, cardinalities, frozen)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: onnxruntime cannot load the inference program ({exc})") from exc
        self._input_names = [i.name for i in self._session.get_inputs()]
        if self._input_names != [t.name for t in spec.inputs]:
            raise BundleError(f"{path}: inputs {self._input_names[:3]}… differ from the manifest's")
        self._frozen_feed = {t.name: a for t, a in zip((t for t in spec.inputs if t.group == "frozen"), self._frozen,
                                                        strict=True)}

    def _prepare(self, tensors: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {**{t.name: a for t, a in zip(self._tensor_specs, tensors, strict=True)}, **self._frozen_feed}

    def _run(self, x: np.ndarray, item_vector: np.ndarray | None, prepared: dict[str, np.ndarray]) -> np.ndarray:
        vector = {} if item_vector is None or self._item_vector is None else {self._item_vector.name: item_vector}
        logits: np.ndarray = self._session.run(None, {self._input_names[0]: x, **vector, **prepared})[0]
        return logits


class Trainer:
    """SGD on the personalisation tensors inside the training program (ExecuTorch training extension).

    The program holds the trainable tensors as mutable state and takes the backbone as inputs
    (``Bundle.frozen``, converted once here); its ``forward(x, y, *frozen)`` returns the loss, the
    gradients and the trainable tensors themselves. ``step`` runs
    forward+backward and ExecuTorch's own SGD (the same C++ optimizer the Android bindings use), so
    the tensors are updated in place inside the program. Usage::

        trainer = bundle.trainer(lr=0.05)
        trainer.write(bundle.personalisation(groups, shared=bank))
        for xb, yb in batches: trainer.step(xb, yb)
        trained = trainer.read()
    """

    def __init__(self, path: Path, spec: ProgramSpec, cardinalities: Sequence[int], frozen: Mapping[str, np.ndarray],
                 *, lr: float) -> None:
        import torch
        from executorch.extension.training import _load_for_executorch_for_training, get_sgd_optimizer

        self._torch = torch
        self._frozen_t = [torch.from_numpy(a) for a in _frozen_inputs(spec, frozen)]
        self._make_sgd = get_sgd_optimizer
        self.spec = spec
        self.cardinalities = tuple(cardinalities)
        self.max_batch = spec.max_batch
        self._item_vector = item_vector_spec(spec)
        self._shapes = {o.name: tuple(o.shape) for o in spec.outputs if o.group in PERSONALISATION_GROUPS
                        and not o.name.endswith(".grad")}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental API" warnings on every call
                self._module = _load_for_executorch_for_training(str(path))
                # The bindings hand out the parameter tensors only after a first forward_backward;
                # one row of OOV codes is a valid input, and no update is applied.
                zero = None if self._item_vector is None else np.zeros((1, self._item_vector.shape[-1]), np.float32)
                self._forward_backward(np.zeros((1, len(self.cardinalities)), np.int64), np.zeros(1, np.float32),
                                       zero)
        except RuntimeError as exc:
            raise BundleError(f"{path}: ExecuTorch cannot load or run the training program ({exc})") from exc
        self._params = self._module.named_parameters()
        if set(self._params) != set(self._shapes):
            raise BundleError(f"{path}: trainable tensors {sorted(self._params)[:5]} differ from the manifest's")
        self.names = tuple(self._params)
        self.lr = lr
        self.skipped_steps = 0  # steps not applied because the loss or a gradient was not finite

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        if not value > 0:
            raise BundleError(f"learning rate must be > 0, got {value}")
        self._lr = float(value)
        self._sgd = self._make_sgd(self._params, self._lr, 0, 0, 0, False)

    def _forward_backward(self, x: np.ndarray, y: np.ndarray, item_vector: np.ndarray | None) -> float:
        t = self._torch
        vector = () if item_vector is None else (t.from_numpy(item_vector),)
        return float(self._module.forward_backward("forward", (t.from_numpy(x), t.from_numpy(y), *vector,
                                                               *self._frozen_t))[0])

    def _check_batch(self, x: np.ndarray, y: np.ndarray, item_vector: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        x = check_codes(x, self.cardinalities)
        y = np.ascontiguousarray(y, dtype=np.float32)
        if y.shape != (len(x),):
            raise BundleError(f"y must have shape [{len(x)}], got {y.shape}")
        if not np.isfinite(y).all() or (y < 0).any() or (y > 1).any():
            raise BundleError("y must hold labels in [0, 1]")
        if self.max_batch is not None and len(x) > self.max_batch:
            raise BundleError(f"batch of {len(x)} rows exceeds the training program's max_batch {self.max_batch}")
        return x, y, check_item_vector(item_vector, len(x), self._item_vector)

    def step(self, x: np.ndarray, y: np.ndarray, item_vector: np.ndarray | None = None) -> float:
        """One SGD step on the batch; returns the mean BCE loss *before* the update.

        A step whose loss or gradient is not finite is not applied (and counted in
        ``skipped_steps``): one diverging batch must not poison the adapters for good. The
        simulation harness drops such steps the same way, so the two stay comparable.
        """
        x, y, v = self._check_batch(x, y, item_vector)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = self._forward_backward(x, y, v)
            grads = self._module.named_gradients()
            flat = self._torch.cat([g.reshape(-1) for g in grads.values()])
            if math.isfinite(loss) and bool(self._torch.isfinite(flat.sum())):
                self._sgd.step(grads)
            else:
                self.skipped_steps += 1
        return loss

    def loss(self, x: np.ndarray, y: np.ndarray, item_vector: np.ndarray | None = None) -> float:
        """The mean BCE loss on the batch, without updating anything."""
        x, y, v = self._check_batch(x, y, item_vector)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._forward_backward(x, y, v)

    def gradients(self) -> dict[str, np.ndarray]:
        """Gradients of the last ``step``/``loss`` call, by parameter name."""
        return {n: g.numpy().copy() for n, g in self._module.named_gradients().items()}

    def read(self) -> dict[str, np.ndarray]:
        """Copies of the current trainable tensors, by parameter name."""
        return {n: p.numpy().copy() for n, p in self._params.items()}

    def write(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Overwrite some or all trainable tensors in place (e.g. the downloaded shared state).

        All names and shapes are checked before anything is written, so a refused call changes nothing.
        """
        unknown = sorted(set(tensors) - set(self._params))
        if unknown:
            raise BundleError(f"not trainable tensors of this program: {unknown[:5]}")
        arrays = {}
        for name, value in tensors.items():
            a = np.asarray(value, dtype=np.float32)
            if a.shape != self._shapes[name]:
                raise BundleError(f"tensor {name!r}: shape {a.shape} != {self._shapes[name]}")
            if not np.isfinite(a).all():
                raise BundleError(f"tensor {name!r} contains NaN or infinite values")
            arrays[name] = a
        with self._torch.no_grad():
            for name, a in arrays.items():
                self._params[name].copy_(self._torch.from_numpy(a))
