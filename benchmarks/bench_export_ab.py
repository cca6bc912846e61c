"""Latency of one already-built KuaiSAR-R bundle through one source tree's runtime, for A/B comparisons.

Runs ``benchmarks/bench_export.py``'s ``latency`` (rank 256 candidates, one batch-64 SGD step,
one intra-op thread) from the given tree on the given bundle, and prints one JSON line with the
load average before and after. Why: on a shared machine a before/after comparison is only fair
when both sides run alternately in the same window; building the two bundles is done beforehand
(``python -m export.cli build --dataset kuaisar-r …`` from each tree).

Usage (alternate the two, several rounds)::

    PYTHONPATH=OLD_TREE OMP_NUM_THREADS=1 python benchmarks/bench_export_ab.py OLD_TREE OLD_BUNDLE 1000
    PYTHONPATH=NEW_TREE OMP_NUM_THREADS=1 python benchmarks/bench_export_ab.py NEW_TREE NEW_BUNDLE 1000
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: the target is single-threaded

import importlib.util
import json
import sys


def main() -> None:
    tree, bundle_dir, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    data_dir = sys.argv[4] if len(sys.argv) > 4 else "/work/shared/data/kuaisar-r"
    spec = importlib.util.spec_from_file_location("bench_export", f"{tree}/benchmarks/bench_export.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: no benchmarks/bench_export.py under {tree}")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import torch

    from fedpa.data import load_dataset
    from fedpa.runtime import Bundle

    torch.set_num_threads(1)
    dataset = load_dataset("kuaisar-r", data_dir, seed=0)
    load_before = os.getloadavg()
    latency = bench.latency(Bundle.open(bundle_dir), dataset, repeats=repeats)
    print(json.dumps({"tree": tree, "bundle": bundle_dir, "load_before": load_before, "load_after": os.getloadavg(),
                      **{k: {m: round(v, 4) for m, v in d.items()} for k, d in latency.items()}}))


if __name__ == "__main__":
    main()
