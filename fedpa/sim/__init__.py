"""In-process federated simulation of SPEC §3: batched clients, the §8 baselines, experiments.

Usage: ``result = simulate(ds, student, get_method("fedpa"), SimConfig(rounds=30))``; see docs/simulation.md.
"""

from fedpa.sim.experiments import ExperimentConfig, run_experiments
from fedpa.sim.methods import METHODS, Method, get_method
from fedpa.sim.runner import SimConfig, SimResult, simulate
from fedpa.sim.server import AggregationConfig

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
