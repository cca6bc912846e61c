"""Edge benchmarks: the demo's wall time, a 200-device fleet over HTTP, and the LDP utility-vs-ε sweep.

    python benchmarks/bench_edge.py demo-fleet            # `fedpa demo` defaults, then 200 devices × 5 rounds
    python benchmarks/bench_edge.py ldp-sweep --data-dir ../shared/data/kuaisar-r
    python benchmarks/bench_edge.py ldp-sweep --dataset synthetic --data-dir . --tag synthetic
    python benchmarks/bench_edge.py count-sweep    # GAUC of each example_count report (synthetic)

``demo-fleet`` writes benchmarks/results/edge.json: the demo's per-stage wall time and report, then
a fresh aggregator (SQLite, default settings: rate limit on) serving the demo's bundle to 200
simulated devices for 5 LDP rounds, with per-round timings and the count of failed rounds.

``ldp-sweep`` (simulation harness, the same protocol as the HTTP path — tests/edge prove parity)
writes benchmarks/results/ldp_sweep.{json,md,png}: KuaiSAR-R, method ``fedpa``, paper protocol
(30 rounds, all private users, 1 local epoch), seeds 0–2. Non-private lr and server lr are picked
on seed 0 *validation* GAUC; for every ε the clip norm C is picked the same way (test never looked
at); the chosen settings run on all seeds; test GAUC at the best-validation-GAUC round is reported
as mean ± std. ε is each user's (ε, δ = 1e-5) over all 30 rounds under replacement adjacency (RDP
accountant, Gaussian, sensitivity 2C).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

app = typer.Typer(add_completion=False, no_args_is_help=True)


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def _write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)
    return path


@app.command("demo-fleet")
def demo_fleet(out: Path = Path("runs/bench-edge"), devices: int = 200, rounds: int = 5, workers: int = 4,
               seed: int = 0) -> None:
    """`fedpa demo` with defaults (timed), then its bundle served to ``devices`` devices over HTTP."""
    import torch

    from edge.client import AggregatorClient
    from edge.device import LocalTraining
    from fedpa.data import load_dataset
    from fedpa.privacy import PrivacyConfig, noise_multiplier_for
    from harness.demo import DemoConfig, run_demo
    from harness.fleet import FleetConfig, run_fleet
    from harness.server_process import AggregatorProcess

    torch.set_num_threads(1)
    start = time.perf_counter()
    demo = run_demo(DemoConfig(out=out / "demo", seed=seed), say=print)
    demo_wall = time.perf_counter() - start
    print(f"demo: {demo_wall:.1f} s")

    ds = load_dataset("synthetic", seed=seed)
    sigma = noise_multiplier_for(8.0, rounds)
    privacy = PrivacyConfig(clip_norm=0.5, noise_multiplier=sigma, epsilon_budget=8.0)
    db = (out / "fleet.db").resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    n = min(devices, len(ds.private_users))
    timings: list[float] = []
    with AggregatorProcess(database_url=f"sqlite:///{db}", log_file=out / "fleet-aggregator.log") as server:
        with AggregatorClient(server.url, token=server.admin_token) as admin:
            admin.publish(out / "demo" / "bundle", config={"round_size": n, "min_reporters": 3})
        last = [time.perf_counter()]

        def progress(stage: str, done: int, total: int) -> None:
            if stage.startswith("round") and done == total:
                now = time.perf_counter()
                timings.append(now - last[0])
                last[0] = now

        fleet_start = time.perf_counter()
        report = run_fleet(ds, out / "devices", FleetConfig(
            server=server.url, model_id="fedpa-demo", rounds=rounds, workers=workers, max_devices=n,
            privacy=privacy, training=LocalTraining(lr=1.0, epochs=5), seed=seed,
            admin_token=None), progress=progress)
        fleet_wall = time.perf_counter() - fleet_start
        status = AggregatorClient(server.url, token=server.admin_token).status("fedpa-demo")
    result = {
        "machine": _machine(),
        "demo": {"wall_s": demo_wall, "stages_s": demo.seconds, "fm_only": demo.fm_only, "before": demo.before,
                 "after": demo.after, "best_round": demo.best_round, "devices": demo.devices,
                 "failed_rounds": demo.failed_rounds, "bytes_up": demo.bytes_up, "epsilon": demo.epsilon},
        "fleet": {"devices": report.devices, "rounds": rounds, "failed_rounds": report.failed_rounds,
                  "errors": report.errors[:20], "wall_s": fleet_wall, "round_s": timings,
                  "accepted_total": status["accepted_total"], "aggregated_total": status["aggregated_total"],
                  "state_version": status["state_version"], "bytes_up": report.bytes_up,
                  "bytes_down": report.bytes_down, "epsilon_max": report.epsilon_max,
                  "initial_test": report.initial.get("test"), "best_test": report.best.get("test"),
                  "best_round": report.best_round, "workers": workers, "closed_by": "server (round_size)"},
    }
    print(json.dumps(result["fleet"], indent=1, default=float))
    print(f"wrote {_write('edge.json', result)}")


def _sim(ds: Any, student: Any, *, lr: float, server_lr: float, seed: int, privacy: Any, rounds: int,
         example_counts: str | None = None) -> Any:
    from fedpa.sim.methods import get_method
    from fedpa.sim.runner import SimConfig, simulate
    from fedpa.sim.server import AggregationConfig

    extra = {"example_counts": example_counts} if example_counts else {}
    return simulate(ds, student, get_method("fedpa", lr=lr),
                    SimConfig(rounds=rounds, seed=seed, privacy=privacy, select="gauc",
                              aggregation=AggregationConfig(server_lr=server_lr), **extra))


@app.command("count-sweep")
def count_sweep(dataset: str = "synthetic", data_dir: Path = Path("."), seeds: str = "0,1,2",
                epsilon: float = 8.0, clip_norm: float = 0.03, lr: float = 1.0, server_lr: float = 3.0,
                rounds: int = 30, cache: Path = Path("runs/students")) -> None:
    """Test GAUC for each way an upload can declare its example count (the aggregation weight).

    exact (the user's interaction count), bounded (≤ 64), coarse (power of two ≤ 64), none (1):
    non-private and at ε (replacement, δ = 1e-5, ``rounds`` uploads); writes example_counts.{json,md}.
    """
    import torch

    from fedpa.data import load_dataset
    from fedpa.privacy import PrivacyConfig, noise_multiplier_for
    from fedpa.sim.experiments import cached_student

    torch.set_num_threads(1)
    seed_list = [int(s) for s in seeds.split(",")]
    sigma = noise_multiplier_for(epsilon, rounds, delta=1e-5)
    rows = []
    for how in ("exact", "bounded", "coarse", "none"):
        for label, privacy in (("non-private", None),
                               (f"ε={epsilon:g}", PrivacyConfig(clip_norm=clip_norm, noise_multiplier=sigma))):
            gauc = []
            for s in seed_list:
                ds = load_dataset(dataset, data_dir, seed=s)
                r = _sim(ds, cached_student(ds, seed=s, cache_dir=cache), lr=lr, server_lr=server_lr, seed=s,
                         privacy=privacy, rounds=rounds, example_counts=how)
                gauc.append(r.test["gauc"])
            rows.append({"example_count": how, "privacy": label, "gauc": float(np.mean(gauc)),
                         "gauc_std": float(np.std(gauc)), "per_seed": gauc})
            print(rows[-1], flush=True)
    _write("example_counts.json", {"machine": _machine(), "dataset": dataset, "seeds": seed_list, "rounds": rounds,
                                   "epsilon": epsilon, "sigma": sigma, "clip_norm": clip_norm, "lr": lr,
                                   "server_lr": server_lr, "rows": rows})
    exact = {r["privacy"]: r["gauc"] for r in rows if r["example_count"] == "exact"}
    lines = ["| example_count sent | privacy | test GAUC | Δ vs exact |", "|---|---|---|---|"]
    lines += [f"| {r['example_count']} | {r['privacy']} | {r['gauc']:.4f} ± {r['gauc_std']:.4f} | "
              f"{r['gauc'] - exact[r['privacy']]:+.4f} |" for r in rows]
    (RESULTS / "example_counts.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


@app.command("ldp-sweep")
def ldp_sweep(data_dir: Annotated[Path, typer.Option(help="KuaiSAR-R folder")], dataset: str = "kuaisar-r",
              seeds: str = "0,1,2", epsilons: str = "1,2,4,8,16,64", clips: str = "0.1,0.3,1.0",
              rounds: int = 30, cache: Path = Path("runs/students"), tag: str = "",
              server_lrs: Annotated[str, typer.Option(help="Server learning rates tried per ε with each clip "
                                                           "norm (default: the non-private choice only).")] = "",
              option: Annotated[list[str] | None, typer.Option(help="load_dataset option KEY=VALUE (repeatable), "
                                                                     "e.g. n_users=2000.")] = None,
              ) -> None:
    """Utility vs ε with the simulation harness; settings chosen on seed-0 validation only."""
    import torch

    from fedpa.data import load_dataset
    from fedpa.data.cli import parse_dataset_options
    from fedpa.privacy import EXAMPLE_COUNT_REPORT, PrivacyConfig, noise_multiplier_for
    from fedpa.sim.experiments import cached_student
    from fedpa.sim.methods import get_method
    from fedpa.sim.runner import simulate
    from harness.plots import plot_sweep

    torch.set_num_threads(1)
    seed_list = [int(s) for s in seeds.split(",")]
    eps_list = [float(e) for e in epsilons.split(",")]
    clip_list = [float(c) for c in clips.split(",")]
    worlds = {}
    options = parse_dataset_options(option)
    for s in seed_list:
        ds = load_dataset(dataset, data_dir, seed=s, **options)
        worlds[s] = (ds, cached_student(ds, seed=s, cache_dir=cache / tag if options else cache))
    started = time.perf_counter()
    fm = [simulate(*worlds[s], get_method("fm-only")).test["gauc"] for s in seed_list]

    # 1. non-private settings on seed 0 validation
    s0 = seed_list[0]
    tuning = []
    for lr in (0.1, 0.3, 1.0):
        for server_lr in (1.0, 3.0):
            r = _sim(*worlds[s0], lr=lr, server_lr=server_lr, seed=s0, privacy=None, rounds=rounds)
            tuning.append({"lr": lr, "server_lr": server_lr, "val_gauc": r.val["gauc"]})
            print("tune", tuning[-1], flush=True)
    best = max(tuning, key=lambda t: t["val_gauc"])
    lr, server_lr = best["lr"], best["server_lr"]
    nonprivate = [_sim(*worlds[s], lr=lr, server_lr=server_lr, seed=s, privacy=None, rounds=rounds) for s in seed_list]

    # 2. per ε: clip norm on seed 0 validation, then every seed
    grid, rows = [], []
    slr_list = [float(v) for v in server_lrs.split(",")] if server_lrs else [server_lr]
    for eps in eps_list:
        sigma = noise_multiplier_for(eps, rounds, delta=1e-5)
        per_clip = {}
        for clip in clip_list:
            for slr in slr_list:
                privacy = PrivacyConfig(clip_norm=clip, noise_multiplier=sigma, delta=1e-5)
                r = _sim(*worlds[s0], lr=lr, server_lr=slr, seed=s0, privacy=privacy, rounds=rounds)
                per_clip[clip, slr] = r
                grid.append({"epsilon": eps, "sigma": sigma, "clip_norm": clip, "server_lr": slr, "seed": s0,
                             "val_gauc": r.val["gauc"], "test_gauc": r.test["gauc"],
                             "epsilon_accounted": r.info.get("epsilon")})
                print("grid", grid[-1], flush=True)
        clip, slr = max(per_clip, key=lambda c: per_clip[c].val["gauc"])
        privacy = PrivacyConfig(clip_norm=clip, noise_multiplier=sigma, delta=1e-5)
        results = [per_clip[clip, slr]] + [_sim(*worlds[s], lr=lr, server_lr=slr, seed=s, privacy=privacy,
                                                rounds=rounds) for s in seed_list[1:]]
        gauc = [r.test["gauc"] for r in results]
        auc = [r.test["auc"] for r in results]
        rows.append({"epsilon": eps, "sigma": sigma, "clip_norm": clip, "server_lr": slr, "gauc": float(np.mean(gauc)),
                     "gauc_std": float(np.std(gauc)), "auc": float(np.mean(auc)), "auc_std": float(np.std(auc)),
                     "per_seed_gauc": gauc,
                     "loss_vs_nonprivate": float(np.mean([n.test["gauc"] for n in nonprivate]) - np.mean(gauc))})
        print("row", rows[-1], flush=True)
    base = [r.test["gauc"] for r in nonprivate]
    payload = {
        "machine": _machine(), "dataset": dataset, "options": options, "seeds": seed_list, "rounds": rounds,
        "delta": 1e-5, "adjacency": "replacement", "example_counts": EXAMPLE_COUNT_REPORT,
        "method": "fedpa", "lr": lr, "server_lr": server_lr, "tuning": tuning, "grid_seed0": grid,
        "fm_only_gauc": {"mean": float(np.mean(fm)), "std": float(np.std(fm)), "per_seed": fm},
        "nonprivate_gauc": {"mean": float(np.mean(base)), "std": float(np.std(base)), "per_seed": base,
                            "auc_mean": float(np.mean([r.test["auc"] for r in nonprivate]))},
        "rows": rows, "seconds": time.perf_counter() - started,
    }
    name = f"ldp_sweep-{tag}" if tag else "ldp_sweep"
    _write(f"{name}.json", payload)
    plot_sweep(rows, RESULTS / f"{name}.png",
               baseline=float(np.mean(base)), fm_only=float(np.mean(fm)),
               title=f"{dataset}: FedPA test GAUC vs per-user ε (replacement, 30 rounds, δ=1e-5)")
    lines = ["| ε (replacement, δ=1e-5, 30 rounds) | σ | C (val) | server lr (val) | test GAUC | Δ vs non-private "
             "| test AUC |",
             "|---|---|---|---|---|---|---|",
             f"| ∞ (no LDP) | 0 | – | {server_lr:g} | {np.mean(base):.4f} ± {np.std(base):.4f} | 0 | "
             f"{payload['nonprivate_gauc']['auc_mean']:.4f} |"]
    for r in sorted(rows, key=lambda r: -r["epsilon"]):
        lines.append(f"| {r['epsilon']:g} | {r['sigma']:.3f} | {r['clip_norm']:g} | {r['server_lr']:g} | "
                     f"{r['gauc']:.4f} ± "
                     f"{r['gauc_std']:.4f} | {-r['loss_vs_nonprivate']:+.4f} | {r['auc']:.4f} |")
    lines.append(f"| FM-only | – | – | – | {np.mean(fm):.4f} ± {np.std(fm):.4f} | | |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app()
