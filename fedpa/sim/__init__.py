"""In-process federated simulation of SPEC §3: batched clients, the §8 baselines, experiments.

Usage: ``result = simulate(ds, student, get_method("fedpa"), SimConfig(rounds=30))``.
"""
