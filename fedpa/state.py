"""The shared state's shape: which tensors the server holds and averages (torch-free).

The server keeps one *bank*: the gate tensors once, and every group-adapter tensor once per value
of its grouping attribute. A device holds its model's parameters under their plain names
(``layers.0.groups.reco_active_level.lora_A``); on the wire and in the bank a group tensor is
suffixed with the value (``…lora_A@3``). Nothing outside this module builds or parses those names.

A bundle ships the bank's first version mostly as a formula (:class:`InitialBank`): the drawn
tensors (LoRA's A per group value, the gate's first weight) are ``bound · counter_uniform(seed,
position)``, and only the rest is stored. :meth:`SharedStateSpec.initial_bank` is the one
materialisation (Java: ``SharedState.initialBank``).

The spec is also the one judge of what is valid against a model: a device's groups, a download's
group selection (``groups=attr:value,attr:*``, syntax in ``fedpa.wire``), an upload's tensors and
a published initial bank (:meth:`SharedStateSpec.initial_bank`). The aggregator and the devices call
the same checks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Final, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fedpa.counter_rng import counter_uniform
from fedpa.errors import PayloadError
from fedpa.wire import ALL_VALUES, GroupSelection, decode_groups

__all__ = ["BANK_LAW", "InitialBank", "SharedStateSpec", "TensorSpec", "wire_name"]

# value = bound · counter_uniform(seed, the tensor's position in SharedStateSpec.tensors), in float32
BANK_LAW: Final = "counter-uniform"

SharedRole = Literal["gate", "group"]


def wire_name(param: str, value: int | None) -> str:
    """Bank/wire name of a model parameter for one group value (None for gate tensors)."""
    return param if value is None else f"{param}@{value}"


class TensorSpec(BaseModel):
    """One tensor of the shared bank, as the manifest declares it."""

    model_config = ConfigDict(frozen=True)

    name: str  # wire name
    param: str  # the model parameter it loads into on a device
    shape: tuple[int, ...]
    dtype: Literal["float32"] = "float32"
    role: SharedRole
    attribute: str | None = None  # set for role "group"
    value: int | None = None  # group value code (0 = OOV/unknown), set for role "group"

    @model_validator(mode="after")
    def _group_fields(self) -> Self:
        # A group tensor without its attribute/value could not be routed to any device.
        if self.role == "group" and (self.attribute is None or self.value is None):
            raise ValueError(f"group tensor {self.name!r} needs its attribute and value")
        return self

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def group(self) -> tuple[str, int] | None:
        """``(attribute, value)`` of a group tensor, None for a gate tensor."""
        if self.role != "group" or self.attribute is None or self.value is None:  # the last two: for mypy
            return None
        return self.attribute, self.value


class InitialBank(BaseModel):
    """How a bundle's initial bank follows from a seed and the few tensors it stores.

    A *drawn* parameter's tensor at position ``k`` of ``SharedStateSpec.tensors`` is
    ``float32(bound) · counter_uniform(seed, k)`` (float32; a different stream per tensor and group
    value; uniform on ±bound, variance bound²/3). Every other parameter is *stored* once under its
    parameter name: a gate tensor as it is, a group tensor as the value every group value starts
    from (LoRA's B = 0). Why: most of the bank is random numbers a seed regenerates, and the
    bundle's size budget is better spent elsewhere.
    """

    model_config = ConfigDict(frozen=True)

    law: Literal["counter-uniform"] = BANK_LAW
    seed: int = Field(ge=0, le=0xFFFFFFFF)
    drawn: dict[str, float]  # parameter name → bound, a float32 value (JSON keeps it exact)

    @field_validator("drawn")
    @classmethod
    def _float32_bounds(cls, drawn: dict[str, float]) -> dict[str, float]:
        for param, bound in drawn.items():
            if not (math.isfinite(bound) and bound > 0 and float(np.float32(bound)) == bound):
                raise ValueError(f"drawn bound of {param!r} must be a positive float32 value, got {bound!r}")
        return drawn


class SharedStateSpec(BaseModel):
    """The complete list of shared tensors plus the lookups the server and devices need."""

    model_config = ConfigDict(frozen=True)

    tensors: tuple[TensorSpec, ...]
    # How the bundle's initial bank is made; a bundle manifest requires it, a simulation's or
    # test's spec describes no bundle and may leave it out.
    initial: InitialBank | None = None

    @model_validator(mode="after")
    def _drawn_params_exist(self) -> Self:
        if self.initial is not None:
            unknown = sorted(set(self.initial.drawn) - {t.param for t in self.tensors})
            if unknown:
                raise ValueError(f"initial.drawn names parameters the bank does not hold: {unknown[:5]}")
        return self

    # These lookups are computed once per spec (it is frozen): the aggregator validates every
    # upload against the same spec, and rescanning a bank of hundreds of tensors each time showed.
    @cached_property
    def _by_name(self) -> dict[str, TensorSpec]:
        return {t.name: t for t in self.tensors}

    @cached_property
    def _attributes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            if (group := t.group) is not None:
                attribute, value = group
                out[attribute] = max(out.get(attribute, 0), value + 1)
        return out

    def by_name(self) -> dict[str, TensorSpec]:
        return dict(self._by_name)

    @property
    def attributes(self) -> dict[str, int]:
        """Grouping attribute → number of values."""
        return dict(self._attributes)

    def for_groups(self, groups: Mapping[str, int]) -> tuple[TensorSpec, ...]:
        """The tensors a device with these group values downloads and updates (manifest order)."""
        self.check_groups(groups)
        return tuple(t for t in self.tensors if (g := t.group) is None or groups[g[0]] == g[1])

    def check_groups(self, groups: GroupSelection, *, allow_all: bool = False) -> None:
        """Exactly this spec's attributes, each with a value code in range (or ``*`` if ``allow_all``)."""
        known = self._attributes
        if set(groups) != set(known):
            raise PayloadError(
                f"groups must name exactly the attributes {sorted(known)}, got {sorted(groups)}"
            )
        for attribute, value in groups.items():
            if allow_all and value == ALL_VALUES:
                continue
            if not isinstance(value, int) or not 0 <= value < known[attribute]:
                raise PayloadError(
                    f"group value {value!r} of {attribute!r} out of range 0..{known[attribute] - 1}"
                )

    def parse_selection(self, raw: str) -> dict[str, int | str]:
        """A download's ``groups`` query (``attr:value,attr:*``) → a checked selection for ``select``."""
        selection = decode_groups(raw)
        self.check_groups(selection, allow_all=True)
        return selection

    def select(self, selection: GroupSelection | None) -> tuple[TensorSpec, ...]:
        """The tensors a download with this selection holds (None: the whole bank), in manifest order."""
        if selection is None:
            return self.tensors
        return tuple(t for t in self.tensors
                     if (g := t.group) is None or selection[g[0]] in (ALL_VALUES, g[1]))

    # Shadows pydantic's deprecated classmethod ``BaseModel.validate`` (an instance method cannot
    # match a classmethod's signature); devices and the aggregator call this name.
    def validate(  # type: ignore[override]
        self, arrays: Mapping[str, np.ndarray], *, groups: Mapping[str, int]
    ) -> None:
        """Refuse anything but exactly this device's tensors with the declared shapes, dtype, finite."""
        expected = {t.name: t for t in self.for_groups(groups)}  # also checks the groups
        missing = sorted(set(expected) - set(arrays))
        unknown = sorted(set(arrays) - set(expected))
        if unknown:
            raise PayloadError(f"unexpected tensors for groups {dict(groups)}: {unknown[:5]}")
        if missing:
            raise PayloadError(f"missing tensors: {missing[:5]}")
        self._check_arrays(arrays, expected, what="tensor")

    def _law(self) -> InitialBank:
        if self.initial is None:
            raise PayloadError("the shared-state spec has no initial law (initial.seed, initial.drawn)")
        return self.initial

    @property
    def stored_names(self) -> tuple[str, ...]:
        """What a bundle's ``shared_state.safetensors`` holds: each parameter that is not drawn, once."""
        drawn = self._law().drawn
        return tuple(dict.fromkeys(t.param for t in self.tensors if t.param not in drawn))

    def initial_bank(self, stored: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The full initial bank (wire names, manifest order) from the stored tensors and the law.

        Refuses stored tensors that are missing, unexpected, of another shape or dtype, or not
        finite, so a damaged file never becomes a bank. Usage: ``spec.initial_bank(decode_tensors(blob))``.
        """
        law = self._law()
        expected = {t.param: t for t in self.tensors if t.param not in law.drawn}
        missing = [p for p in expected if p not in stored]
        unknown = sorted(set(stored) - set(expected))
        if missing or unknown:
            raise PayloadError(f"stored initial tensors do not match the manifest's shared_state: missing "
                               f"{missing[:5]}, unexpected {unknown[:5]} (drawn: {sorted(law.drawn)[:5]})")
        self._check_arrays(stored, expected, what="stored initial tensor")
        bank: dict[str, np.ndarray] = {}
        for index, t in enumerate(self.tensors):
            if t.param in law.drawn:
                u = counter_uniform(law.seed, index, t.numel)
                bank[t.name] = (u * np.float32(law.drawn[t.param])).astype(np.float32).reshape(t.shape)
            else:
                bank[t.name] = np.array(stored[t.param], dtype=np.float32)  # a copy per group value
        return bank

    @staticmethod
    def _check_arrays(arrays: Mapping[str, np.ndarray], expected: Mapping[str, TensorSpec], *, what: str) -> None:
        for name, array in arrays.items():
            spec = expected[name]
            if tuple(array.shape) != spec.shape:
                raise PayloadError(f"{what} {name!r} has shape {tuple(array.shape)}, expected {spec.shape}")
            if array.dtype != np.dtype(spec.dtype):
                raise PayloadError(f"{what} {name!r} has dtype {array.dtype}, expected {spec.dtype}")
            if not np.isfinite(array).all():
                raise PayloadError(f"{what} {name!r} contains NaN or infinite values")

    def to_params(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Wire names → model parameter names (for the device's own tensors)."""
        specs = self.by_name()
        return {specs[name].param: array for name, array in arrays.items()}

    def from_params(self, params: Mapping[str, np.ndarray], *, groups: Mapping[str, int]
                    ) -> dict[str, np.ndarray]:
        """Model parameter names → wire names, for a device with these group values."""
        by_param = {t.param: t.name for t in self.for_groups(groups)}
        return {by_param[p]: a for p, a in params.items() if p in by_param}

    @staticmethod
    def build(gate: Iterable[tuple[str, tuple[int, ...]]],
              group: Iterable[tuple[str, str, tuple[int, ...]]],
              cardinalities: Mapping[str, int], *, initial: InitialBank | None = None) -> SharedStateSpec:
        """From (param, shape) gate tensors and (param, attribute, shape) group tensors."""
        tensors = [TensorSpec(name=p, param=p, shape=s, role="gate") for p, s in gate]
        for param, attribute, shape in group:
            for value in range(cardinalities[attribute]):
                tensors.append(TensorSpec(name=wire_name(param, value), param=param, shape=shape,
                                          role="group", attribute=attribute, value=value))
        return SharedStateSpec(tensors=tuple(tensors), initial=initial)
