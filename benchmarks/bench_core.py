"""Issue 2 benchmark: teacher vs student-from-scratch vs distilled student (FM-only rows).

For each dataset and seed: load, pre-train the teacher on open users, distil the student, train
the student from scratch; report AUC/GAUC on the private users' test split and wall times.

    python benchmarks/bench_core.py --seeds 3            # both real datasets under ../shared/data
    python benchmarks/bench_core.py --datasets synthetic --seeds 1

Writes benchmarks/results/core.json and prints a markdown table (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fedpa.data import load_dataset
from fedpa.train import distill, pretrain, train_from_scratch

DATA = Path(os.environ.get("FEDPA_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
DIRS = {"kuaisar-r": DATA / "kuaisar-r", "kuairand": DATA / "kuairand-pure", "synthetic": None}


def run(dataset: str, seed: int, features: str) -> dict:
    t0 = time.perf_counter()
    ds = load_dataset(dataset, DIRS[dataset], seed=seed, features=features)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    teacher = pretrain(ds, seed=seed)
    t_pre = time.perf_counter() - t1
    t2 = time.perf_counter()
    student = distill(ds, teacher.model, seed=seed)
    t_dist = time.perf_counter() - t2
    scratch = train_from_scratch(ds, seed=seed)
    rows = {"teacher": teacher.metrics, "student-distilled": student.metrics, "student-scratch": scratch.metrics}
    return {
        "dataset": dataset, "seed": seed, "load_s": t_load, "pretrain_s": t_pre, "distill_s": t_dist,
        "pretrain_plus_distill_s": t_pre + t_dist,
        "rows": {k: {"params": v["parameters"], "best_epoch": v["best_epoch"], "test": v["private_test"],
                     "open_val_auc": v["open_val"]["auc"], "open_val_gauc": v["open_val"]["gauc"]}
                 for k, v in rows.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["kuaisar-r", "kuairand"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--features", default="base", choices=["base", "full"],
                        help="model inputs (docs/RESULTS.md §1 is the base inputs; §9 the full ones)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "core.json")
    args = parser.parse_args()
    results = [run(d, s, args.features) for d in args.datasets for s in range(args.seeds)]
    lines = ["| dataset | model | params | test AUC | test GAUC | pretrain+distill s |", "|---|---|---|---|---|---|"]
    for d in args.datasets:
        runs = [r for r in results if r["dataset"] == d]
        for model in ("teacher", "student-scratch", "student-distilled"):
            aucs = np.array([r["rows"][model]["test"]["auc"] for r in runs])
            gaucs = np.array([r["rows"][model]["test"]["gauc"] for r in runs])
            secs = np.array([r["pretrain_plus_distill_s"] for r in runs])
            params = runs[0]["rows"][model]["params"]
            lines.append(f"| {d} | {model} | {params:,} | {aucs.mean():.4f} ± {aucs.std():.4f} "
                         f"| {gaucs.mean():.4f} ± {gaucs.std():.4f} | {secs.mean():.1f} |")
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        "features": args.features, "results": results, "table": table}, indent=2, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
