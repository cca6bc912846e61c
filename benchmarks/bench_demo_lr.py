"""Choose the demo's device lr and LDP clip norm on the synthetic data's **validation** split.

Why: under Gaussian LDP the noise σ·C added to every upload does not depend on the signal, so
the server's group means random-walk by σ·C/√(devices in the group) per round; the clip norm C
sets that walk's size and the device lr how hard local SGD pushes from the noisy state. Each
setting runs the whole ``fedpa demo`` (HTTP fleet) and prints, per round, the validation GAUC
the choice is made on; test GAUC is printed only at the round the demo itself would pick, for
the record, never used to choose.

Usage: ``python benchmarks/bench_demo_lr.py --lr 1.0 0.3 --clip 0.5 0.1 --seeds 0 [--out runs/demo-lr]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.demo import DemoConfig, run_demo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lr", type=float, nargs="+", default=[1.0, 0.3])
    p.add_argument("--clip", type=float, nargs="+", default=[0.5, 0.1])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", type=Path, default=Path("runs/demo-lr"))
    args = p.parse_args()
    rows = []
    for seed in args.seeds:
        for clip in args.clip:
            for lr in args.lr:
                report = run_demo(DemoConfig(out=args.out / f"s{seed}-c{clip:g}-lr{lr:g}", seed=seed, lr=lr,
                                             clip_norm=clip))
                val = [round(r["val"]["gauc"], 4) for r in report.rounds]
                row = {"seed": seed, "clip_norm": clip, "lr": lr, "val_gauc_by_round": val,
                       "val_gauc_before": round(report.validation["before"]["gauc"], 4),
                       "val_gauc_mean": round(sum(val) / len(val), 4), "diverged": report.diverged_rounds,
                       "best_round": report.best_round, "test_gauc_at_pick": round(report.after["gauc"], 4),
                       "fm_only_test_gauc": round(report.fm_only["gauc"], 4),
                       "fleet_s": next(v for k, v in report.seconds.items() if k.startswith("fleet"))}
                rows.append(row)
                print(json.dumps(row), flush=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
