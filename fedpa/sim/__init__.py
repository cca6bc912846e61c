"""In-process federated simulation of docs/design.md §3: batched clients, the §8 baselines, experiments.

Usage: ``result = simulate(ds, student, get_method("fedpa"), SimConfig(rounds=30))``; see docs/simulation.md.

The public names are resolved on first use (PEP 562) so that ``fedpa --help``, which imports
``fedpa.sim.cli``, does not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpa.lazy import lazy_exports

if TYPE_CHECKING:
    from fedpa.sim.experiments import ExperimentConfig, run_experiments
    from fedpa.sim.methods import METHODS, Method, get_method
    from fedpa.sim.runner import SimConfig, SimResult, simulate
    from fedpa.sim.server import AggregationConfig

__getattr__, __dir__ = lazy_exports(__name__, {
    "experiments": ("ExperimentConfig", "run_experiments"),
    "methods": ("METHODS", "Method", "get_method"),
    "runner": ("SimConfig", "SimResult", "simulate"),
    "server": ("AggregationConfig",),
})

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

