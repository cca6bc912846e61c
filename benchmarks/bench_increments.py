"""Issue 14's increments table: FM-only base → + each input kind → picked inputs → + FedPA adapters → + LDP.

For each seed: the dataset is built once per input selection (same split: the selection never
changes who is open or private), a teacher is pre-trained and a student distilled per selection
(``fedpa.sim.experiments.cached_student``), and the private users' test rows are scored by
FM-only (the frozen student) per selection. On seed 0 the input selection with the best FM-only
**validation** GAUC is picked; over it run the reference — teacher and student trained centrally
on everyone's (open + private users') rows, same inputs (``cached_student(rows="everyone")``) —,
``fedpa`` and ``fedpa`` with LDP. Every row is reported as mean ± std over seeds and as the paired
Δ against the row it builds on, with a 95 % user-bootstrap CI (``fedpa.metrics.gauc_delta_ci``),
and the FedPA rows with the share of the open-only → everyone gap they close. The central ceiling
(item statistics counted over every user, research only) is the all-input FM-only row with
``stats_from=all``. FedPA's settings (lr, local epochs, server lr; the LDP clip norm) are chosen on
seed 0's **validation** GAUC, its best round on validation GAUC; test is read once per setting.
With ``--refit`` a second FedPA row scores test after re-running the picked number of rounds on
train + validation rows (``SimConfig.refit``: what a device has seen by the test period), and the
LDP row is run that way.

Usage: ``python benchmarks/bench_increments.py --dataset kuairand --data-dir ../shared/data/kuairand-pure``.
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
from fedpa.metrics import gauc_delta_ci, per_user_auc
from fedpa.privacy import PrivacyConfig, noise_multiplier_for
from fedpa.sim.experiments import cached_student
from fedpa.sim.methods import get_method
from fedpa.sim.runner import SimConfig, SimResult, simulate
from fedpa.sim.server import AggregationConfig

# row key → (row label, load_dataset selection)
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "base": ("FM-only, base inputs", {"features": "base"}),
    "stats": ("+ item statistics (open)", {"without": "item_code,history"}),
    "code": ("+ item code", {"without": "item_stats,history"}),
    "history": ("+ on-device history", {"without": "item_stats,item_code"}),
    "stats+history": ("+ item statistics + history", {"without": "item_code"}),
    "all": ("FM-only, all inputs", {}),
    "ceiling": ("central ceiling: all inputs, statistics from all users", {"stats_from": "all"}),
}
PICKABLE = ("stats", "code", "history", "stats+history", "all")  # input selections the validation pick chooses from
# FedPA's settings, chosen on seed 0's validation GAUC (docs/RESULTS.md §9: the private adapters need
# several local epochs per round to learn within 30 rounds; 1 epoch at lr ≤ 0.3 barely moves them)
GRID = [{"lr": lr, "epochs": e, "server_lr": s} for lr, e in ((0.1, 1), (0.3, 1), (0.1, 5), (0.3, 5))
        for s in (1.0, 3.0)]
CLIPS = (0.01, 0.1, 1.0)  # LDP clip norms tried on seed 0's validation split


def _fedpa(ds: Any, student: Any, trial: dict[str, Any], rounds: int, seed: int,
           privacy: PrivacyConfig | None = None, refit: bool = False) -> SimResult:
    # the round is picked on validation GAUC, the headline metric (pooled AUC mostly rewards per-user bias)
    config = SimConfig(rounds=rounds, seed=seed, privacy=privacy, local_epochs=trial["epochs"], select="gauc",
                       refit=refit,
                       aggregation=AggregationConfig(server_lr=trial["server_lr"]))
    return simulate(ds, student, get_method("fedpa", lr=trial["lr"]), config)


def _gap_closed(fed: list[SimResult], fm: list[SimResult], ref: list[SimResult], *, n_boot: int = 2000,
                seed: int = 0) -> dict[str, float]:
    """(GAUC(fed) − GAUC(fm)) / (GAUC(ref) − GAUC(fm)), 3-seed means, with a joint user-bootstrap 95 % CI.

    Both differences are resampled with the same users in each replicate (as ``gauc_delta_ci`` does
    for one difference), so the interval is that of the ratio of the reported means.
    """
    rng = np.random.default_rng(seed)
    num_pt, den_pt, num_b, den_b = [], [], [], []
    for f, m, r in zip(fed, fm, ref, strict=True):
        users, a, w = per_user_auc(f.test_user, f.test_y, f.test_scores)
        _, b, _ = per_user_auc(m.test_user, m.test_y, m.test_scores)
        _, c, _ = per_user_auc(r.test_user, r.test_y, r.test_scores)
        num_pt.append((w * (a - b)).sum() / w.sum())
        den_pt.append((w * (c - b)).sum() / w.sum())
        counts = rng.multinomial(users.size, np.full(users.size, 1.0 / users.size), size=n_boot)
        num_b.append((counts @ (w * (a - b))) / (counts @ w))
        den_b.append((counts @ (w * (c - b))) / (counts @ w))
    ratio = np.mean(num_b, axis=0) / np.mean(den_b, axis=0)
    low, high = np.quantile(ratio, [0.025, 0.975])
    return {"gap": float(np.mean(den_pt)), "closed": float(np.mean(num_pt) / np.mean(den_pt)),
            "low": float(low), "high": float(high)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--option", action="append", default=[], help="dataset option KEY=VALUE (JSON values)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--epsilon", type=float, default=8.0)
    p.add_argument("--rows", default=",".join(SETTINGS),
                   help=f"FM-only input selections, comma-separated (of {', '.join(SETTINGS)}; base always runs)")
    p.add_argument("--grid", type=json.loads, default=GRID, help="FedPA trials as a JSON list (lr, epochs, server_lr)")
    p.add_argument("--clips", default=",".join(map(str, CLIPS)),
                   help="LDP clip norms to pick from on validation; empty: no LDP row")
    p.add_argument("--refit", action="store_true",
                   help="score test after re-running the picked rounds on train + validation rows (SimConfig.refit)")
    p.add_argument("--no-base-fedpa", action="store_true", help="skip the FedPA-on-base-inputs reference row")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    clip_norms = [float(c) for c in args.clips.split(",") if c.strip()]
    keys = ["base", *(k for k in SETTINGS if k != "base" and k in args.rows.split(","))]
    unknown = sorted(set(args.rows.split(",")) - set(SETTINGS))
    if unknown or not any(k in PICKABLE for k in keys):
        p.error(f"--rows: unknown {unknown} or no selection to pick from (need one of {', '.join(PICKABLE)})")
    torch.set_num_threads(1)
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    cache = Path("runs/increments") / args.dataset
    scores: dict[str, list[SimResult]] = {}
    tuned: dict[str, Any] = {}
    start = time.perf_counter()
    picked_row = ref_row = fed_row = refit_row = ldp_row = ""
    for seed in range(args.seeds):
        loaded: dict[str, tuple[Any, Any]] = {}
        for key in keys:
            row, sel = SETTINGS[key]
            ds = load_dataset(args.dataset, args.data_dir, seed=seed, **{**options, **sel})
            student = cached_student(ds, seed=seed, cache_dir=cache)
            loaded[key] = (ds, student)
            scores.setdefault(row, []).append(simulate(ds, student, get_method("fm-only")))
            print(f"seed {seed} {row}: {scores[row][-1].test['gauc']:.4f} ({time.perf_counter() - start:.0f}s)",
                  flush=True)
        if seed == 0:  # the input kinds are picked per dataset on validation GAUC only, then fixed
            val = {k: scores[SETTINGS[k][0]][0].val["gauc"] for k in keys if k in PICKABLE}
            tuned["inputs"] = max(val, key=lambda k: val[k])
            tuned["inputs_val_gauc"] = val
            picked = tuned["inputs"]
            picked_row = SETTINGS[picked][0]
            ref_row = f"reference: central training on everyone's rows ({picked} inputs)"
            fed_row = f"+ FedPA adapters ({picked} inputs)"
            # with --refit the LDP row builds on the refit FedPA row (the setting it is reported for)
            refit_row = "+ FedPA adapters, refit on train + validation rows" if args.refit else ""
            ldp_row = f"+ LDP (ε = {args.epsilon:g})" + (", refit" if args.refit else "")
            print("picked inputs", tuned, flush=True)
        ds, student = loaded[tuned["inputs"]]
        ref = cached_student(ds, seed=seed, cache_dir=cache, rows="everyone")
        scores.setdefault(ref_row, []).append(simulate(ds, ref, get_method("fm-only")))
        print(f"seed {seed} {ref_row}: {scores[ref_row][-1].test['gauc']:.4f}", flush=True)
        if seed == 0:  # settings chosen on validation GAUC only, then fixed
            trials = [(t, _fedpa(ds, student, t, args.rounds, seed).val["gauc"]) for t in args.grid]
            tuned["trial"] = max(trials, key=lambda z: z[1])[0]
            tuned["val_gauc"] = [[t, v] for t, v in trials]
            print("tuned", tuned, flush=True)
        trial = tuned["trial"]
        sigma = noise_multiplier_for(args.epsilon, args.rounds)
        if seed == 0 and clip_norms:  # the clip norm is chosen on validation too (docs/RESULTS.md §5 does the same)
            clips = [(c, _fedpa(ds, student, trial, args.rounds, seed,
                                PrivacyConfig(clip_norm=c, noise_multiplier=sigma)).val["gauc"]) for c in clip_norms]
            tuned["clip_norm"] = max(clips, key=lambda z: z[1])[0]
            tuned["clip_val_gauc"] = clips
            print("tuned", tuned, flush=True)
        base_ds, base_student = loaded["base"]
        extra = {fed_row: _fedpa(ds, student, trial, args.rounds, seed)}
        if args.refit:
            extra[refit_row] = _fedpa(ds, student, trial, args.rounds, seed, refit=True)
        if clip_norms:
            extra[ldp_row] = _fedpa(ds, student, trial, args.rounds, seed,
                                    PrivacyConfig(clip_norm=tuned["clip_norm"], noise_multiplier=sigma),
                                    refit=args.refit)
        if not args.no_base_fedpa:
            extra["reference: FedPA adapters on base inputs"] = _fedpa(base_ds, base_student, trial, args.rounds, seed)
        for row, r in extra.items():
            scores.setdefault(row, []).append(r)
            print(f"seed {seed} {row}: {r.test['gauc']:.4f} (round {r.best_round}) eps={r.info.get('epsilon')}",
                  flush=True)
    base_row = SETTINGS["base"][0]
    against = {SETTINGS[k][0]: base_row for k in keys if k not in ("base", "ceiling")}
    against.update({  # each row's paired Δ is against the row it builds on
        fed_row: picked_row, ldp_row: refit_row or fed_row, ref_row: picked_row, refit_row: picked_row,
        SETTINGS["ceiling"][0]: SETTINGS["all"][0] if "all" in keys else picked_row,
        "reference: FedPA adapters on base inputs": base_row,
    })
    rows = []
    for row, runs in scores.items():
        g = np.array([r.test["gauc"] for r in runs])
        entry: dict[str, Any] = {"row": row, "gauc_mean": float(g.mean()), "gauc_std": float(g.std(ddof=1)),
                                 "per_seed": g.tolist(), "val_gauc_mean": float(np.mean([r.val["gauc"] for r in runs]))}
        ref = against.get(row)
        if ref:
            ci = gauc_delta_ci([(r.test_user, r.test_y, r.test_scores, f.test_scores)
                                for r, f in zip(runs, scores[ref], strict=True)])
            entry.update(vs=ref, delta=ci.delta, low=ci.low, high=ci.high)
        if row != base_row and ref != base_row:
            ci = gauc_delta_ci([(r.test_user, r.test_y, r.test_scores, f.test_scores)
                                for r, f in zip(runs, scores[base_row], strict=True)])
            entry["vs_base"] = {"delta": ci.delta, "low": ci.low, "high": ci.high}
        if row in (fed_row, refit_row, ldp_row):  # the share of the open-only → central gap this row closes
            entry["gap_closed"] = _gap_closed(runs, scores[picked_row], scores[ref_row])
        eps = [r.info.get("epsilon") for r in runs if r.info.get("epsilon") is not None]
        if eps:
            entry["epsilon"] = max(eps)
        rows.append(entry)
    result = {"dataset": args.dataset, "options": options, "seeds": args.seeds, "rounds": args.rounds,
              "refit": args.refit, "tuned_on_seed0_val": tuned, "rows": rows,
              "wall_seconds": time.perf_counter() - start}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"increments-{args.dataset}.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    print(f"\n| {args.dataset} | test GAUC (mean ± std, {args.seeds} seeds) | paired Δ [95 % CI] | vs |")
    print("|---|---|---|---|")
    for e in rows:
        d = f"{e['delta']:+.4f} [{e['low']:+.4f}, {e['high']:+.4f}]" if "delta" in e else "—"
        print(f"| {e['row']} | {e['gauc_mean']:.4f} ± {e['gauc_std']:.4f} | {d} | {e.get('vs', '')} |")
    for e in rows:
        if "gap_closed" in e:
            g = e["gap_closed"]
            print(f"{e['row']}: closes {g['closed']:.0%} [{g['low']:.0%}, {g['high']:.0%}] of the "
                  f"open-only → central gap ({g['gap']:+.4f} GAUC)")
    print(f"wrote {path} ({result['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
