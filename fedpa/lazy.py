"""Lazy package exports (PEP 562), written once for every package that re-exports heavy modules.

Why: ``fedpa --help`` and ``fedpa-export --help`` must not pay for importing torch, and a device
importing ``fedpa.data.schema`` must not load the dataset loaders, yet ``from export import
build_bundle`` should keep working. A package declares where each public name lives; the name is
imported from there on first use and then cached in the package. Usage, in a package ``__init__``::

    __getattr__, __dir__ = lazy_exports(__name__, {"bundle": ("build_bundle",), "lower": ("lower_onnx",)})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: Mapping[str, Sequence[str]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``(__getattr__, __dir__)`` pair for ``package``, whose ``homes`` maps a submodule's
    name (relative to the package) to the public names it defines."""
    home = {name: f"{package}.{module}" for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home[name]), name)
        setattr(sys.modules[package], name, value)  # once: later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *home})

    return __getattr__, __dir__
