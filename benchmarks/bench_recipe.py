"""Choosing the foundation-model training recipe (``fedpa.train.TrainConfig``) on validation only.

Why: on KuaiRand the teacher's early stopping on open-validation pooled AUC ended after 1–2 epochs
on some seeds, which made the FM-only students unstable across seeds and the input pick unreliable
(docs/RESULTS.md §9.1). For each seed, input selection and candidate recipe this trains teacher →
student on open users and prints the **open-user validation** GAUC (the choice) and the private
users' validation GAUC (the confirmation), plus the epochs each stage ran. The test split is never
printed or saved.

Usage: ``python benchmarks/bench_recipe.py --dataset kuairand --data-dir ../shared/data/kuairand-pure
--recipe '{"select":"auc"}' --recipe '{"select":"gauc","patience":5}'``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedpa.data import load_dataset
from fedpa.train import TrainConfig, distill, pretrain

SELECTIONS = {"base": {"features": "base"}, "stats": {"without": "item_code,history"},
              "history": {"without": "item_stats,item_code"}, "stats+history": {"without": "item_code"}, "all": {}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--option", action="append", default=[], help="dataset option KEY=VALUE (JSON values)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--inputs", default="stats,stats+history,all", help=f"of {', '.join(SELECTIONS)}")
    p.add_argument("--recipe", action="append", type=json.loads, required=True,
                   help="TrainConfig overrides as JSON (repeat for several recipes)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/recipe.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    runs: list[dict[str, Any]] = []
    start = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        for key in args.inputs.split(","):
            ds = load_dataset(args.dataset, args.data_dir, seed=seed, **{**options, **SELECTIONS[key]})
            for recipe in args.recipe:
                train = TrainConfig(**recipe)
                teacher = pretrain(ds, train=train, seed=seed)
                student = distill(ds, teacher.model, train=train, seed=seed)
                row = {"seed": seed, "inputs": key, "recipe": recipe,
                       "teacher_epochs": [teacher.metrics["best_epoch"], teacher.metrics["epochs_run"]],
                       "student_epochs": [student.metrics["best_epoch"], student.metrics["epochs_run"]],
                       "teacher_open_val_gauc": teacher.metrics["open_val"]["gauc"],
                       "open_val_gauc": student.metrics["open_val"]["gauc"],
                       "open_val_auc": student.metrics["open_val"]["auc"],
                       "private_val_gauc": student.metrics["private_val"]["gauc"]}
                runs.append(row)
                print(f"seed {seed} {key:14s} {json.dumps(recipe):50s} teacher ep {row['teacher_epochs']} "
                      f"student ep {row['student_epochs']} open-val GAUC {row['open_val_gauc']:.4f} "
                      f"private-val GAUC {row['private_val_gauc']:.4f} ({time.perf_counter() - start:.0f}s)",
                      flush=True)
    print("\nmean over seeds (open-val GAUC | private-val GAUC):")
    for key in args.inputs.split(","):
        for recipe in args.recipe:
            sel = [r for r in runs if r["inputs"] == key and r["recipe"] == recipe]
            o = np.array([r["open_val_gauc"] for r in sel])
            v = np.array([r["private_val_gauc"] for r in sel])
            print(f"{key:14s} {json.dumps(recipe):50s} {o.mean():.4f} ± {o.std():.4f} | {v.mean():.4f} ± {v.std():.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dataset": args.dataset, "runs": runs,
                                    "wall_seconds": time.perf_counter() - start}, indent=1, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
