"""In-process federated simulation of docs/design.md §3: batched clients, the §8 baselines, experiments.

Usage: ``result = simulate(ds, student, get_method("fedpa"), SimConfig(rounds=30))``; see docs/simulation.md.

The public names are resolved on first use (PEP 562) so that ``fedpa --help``, which imports
``fedpa.sim.cli``, does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedpa.sim.experiments import ExperimentConfig, run_experiments
    from fedpa.sim.methods import METHODS, Method, get_method
    from fedpa.sim.runner import SimConfig, SimResult, simulate
    from fedpa.sim.server import AggregationConfig

_HOME = {
    "ExperimentConfig": "experiments", "run_experiments": "experiments",
    "METHODS": "methods", "Method": "methods", "get_method": "methods",
    "SimConfig": "runner", "SimResult": "runner", "simulate": "runner",
    "AggregationConfig": "server",
}

__all__ = [
    "METHODS",
    "AggregationConfig",
    "ExperimentConfig",
    "Method",
    "SimConfig",
    "SimResult",
    "get_method",
    "run_experiments",
    "simulate",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'fedpa.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fedpa.sim.{_HOME[name]}"), name)
