"""Edge benchmarks: the demo's wall time, a 200-device fleet over HTTP, and the LDP utility-vs-ε sweep.

    python benchmarks/bench_edge.py demo-fleet            # `fedpa demo` defaults, then 200 devices × 5 rounds
    python benchmarks/bench_edge.py ldp-sweep --data-dir ../shared/data/kuaisar-r
    python benchmarks/bench_edge.py ldp-sweep --dataset synthetic --data-dir . --tag synthetic
    python benchmarks/bench_edge.py count-sweep    # GAUC of each example_count report (synthetic)
    python benchmarks/bench_edge.py rank --tag after   # one ranking of 256 candidates through the Device API
    python benchmarks/bench_edge.py rank --n-items 4000 --tag after-4000   # a full 2,048-code cache

``demo-fleet`` writes benchmarks/results/edge.json: the demo's per-stage wall time and report, then
a fresh aggregator (SQLite, default settings: rate limit on) serving the demo's bundle to 200
simulated devices for 5 LDP rounds, with per-round timings and the count of failed rounds.

``rank`` writes benchmarks/results/edge_rank-<tag>.json: the tests' world (synthetic, 200 users, a
student with item vectors, exported), its bundle and item table served by a real aggregator
(SQLite), one device ranking 256 candidates (``DeviceSignals.fill`` from the cached item rows,
then ``Device.recommend``) many times: wall time per ranking, decodes of the item-vector cache
per ranking, with the cache as a device has it (its log's and the candidates' items) and with
every item of the table in it, and what one decode of such a file costs (also for a file at the
2,048-code cap). Run it on two checkouts to compare (the figures name the commit).

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


@app.command("rank")
def rank(out: Path = Path("runs/bench-edge-rank"), candidates: int = 256, rankings: int = 300, warmup: int = 10,
         n_users: int = 200, n_items: int = 300, tag: str = "run", seed: int = 0) -> None:
    """Rankings of ``candidates`` items through the Device API: wall time and item-vector cache decodes."""
    import shutil
    import statistics
    import subprocess

    import torch

    from edge.client import AggregatorClient
    from edge.device import Device
    from edge.items import ItemTableClient, publish_item_table
    from edge.signals import DeviceSignals
    from edge.store import LocalStore
    from export.bundle import build_bundle
    from export.items import student_item_vectors, write_item_table
    from fedpa.data import load_dataset
    from fedpa.manifest import PrivacySettings
    from fedpa.runtime.items import CodeVectors, ItemRows, ItemTableFile
    from fedpa.train import TrainConfig, adapter_config_for, distill, pretrain
    from harness.server_process import AggregatorProcess

    torch.set_num_threads(1)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # the tests' world (tests/conftest.py) by default; more items → more item codes (at most 2,048) in the cache
    ds = load_dataset("synthetic", seed=seed, n_users=n_users, n_items=n_items, drift=3.0)
    train = TrainConfig(epochs=30)
    student = distill(ds, pretrain(ds, train=train, seed=seed).model, train=train, seed=seed).model
    bundle = build_bundle(student, ds.schema, out / "bundle", model_id="bench-rank",
                          adapter=adapter_config_for(ds.schema, gate_mode="residual"),
                          privacy=PrivacySettings(mechanism="none", noise_multiplier=0.0), seed=seed,
                          max_batch=candidates, max_train_batch=64).path
    table = write_item_table(bundle, ds, out / "items.safetensors", table_version=1,
                             code_vectors=student_item_vectors(student, bundle))
    served = ItemTableFile.decode(table.path.read_bytes())
    decodes = [0]  # the real decoder, counted: every read of a device's item_vectors.safetensors
    real_decode = CodeVectors.decode.__func__  # type: ignore[attr-defined]

    def counted(cls: type[CodeVectors], body: bytes, **kwargs: Any) -> CodeVectors:
        decodes[0] += 1
        return real_decode(cls, body, **kwargs)

    CodeVectors.decode = classmethod(counted)  # type: ignore[method-assign,assignment]
    user = int(ds.private_users[0])
    pool = ds.private_test
    rows = np.arange(min(candidates, len(pool.y)))
    x = pool.x[rows].copy()
    x[:, [j for j, f in enumerate(ds.schema.features) if f.source in ("item_table", "history")]] = 0
    ids = ds.item_ids[pool.item[rows]]
    cases: dict[str, Any] = {}
    with AggregatorProcess(database_url=f"sqlite:///{(out / 'agg.db').resolve()}", log_file=out / "agg.log",
                           env={"FEDPA_RATE_LIMIT_PER_MINUTE": "0"}) as server:
        with AggregatorClient(server.url, token=server.admin_token) as admin:
            admin.publish(bundle, config={"round_size": 1000})
            publish_item_table(admin, "bench-rank", table.path)
        for case in ("device", "all-items"):
            store = LocalStore.open(out / f"device-{case}")
            mine = ds.private_train.user == user
            store.save_log(ds.private_train.x[mine], ds.private_train.y[mine], ds.private_train.ts[mine])
            client = AggregatorClient(server.url)
            device = Device(store, client, model_id="bench-rank", noise_seed=0)
            device.setup(groups={a: int(v) for a, v in zip(ds.schema.group_attributes, ds.user_groups[user],
                                                          strict=True)})
            device.sync_state()  # the shared state rankings use offline
            signals = DeviceSignals.open(store, ds.schema, items=ItemTableClient(client, "bench-rank",
                                                                                 model_version=1))
            learn = served.ids if case == "all-items" else ds.item_ids[np.unique(ds.private_train.item[mine])]
            for start in range(0, len(learn), 1024):
                signals.learn_vectors(learn[start:start + 1024])
            times, item_vector_s, decoded = [], [], 0
            for i in range(warmup + rankings):
                before = decodes[0]
                t0 = time.perf_counter()
                full = signals.fill(x, ids)
                device.recommend(full, k=10, offline=True)
                times.append(time.perf_counter() - t0)
                decoded += (decodes[0] - before) if i >= warmup else 0
                t1 = time.perf_counter()
                device.item_vectors(full)
                item_vector_s.append(time.perf_counter() - t1)
            times, item_vector_s = times[warmup:], item_vector_s[warmup:]
            cache = store.root / "item_vectors.safetensors"
            body = cache.read_bytes()
            decode_s = []
            for _ in range(200):  # one decode of this cache file: what each avoided read cost
                t2 = time.perf_counter()
                CodeVectors.decode(body)
                decode_s.append(time.perf_counter() - t2)
            cases[case] = {
                "cached_codes": len(CodeVectors.decode(cache.read_bytes())), "cache_bytes": cache.stat().st_size,
                "rankings": rankings, "candidates": len(rows),
                "decodes_per_ranking": decoded / rankings,
                "rank_ms_median": 1e3 * statistics.median(times),
                "rank_ms_p10": 1e3 * float(np.percentile(times, 10)),
                "rank_ms_p90": 1e3 * float(np.percentile(times, 90)),
                "item_vectors_ms_median": 1e3 * statistics.median(item_vector_s),
                "decode_ms_median": 1e3 * statistics.median(decode_s), "decode_ms_min": 1e3 * min(decode_s)}
            client.close()
            print(case, json.dumps(cases[case], indent=1, default=float))
    # a cache at the item-code cap (fedpa.signals.SignalSpec.item_code_cap 2,048 + the OOV code), this
    # student's dimension, random rows: the most a device's file can hold, decoded
    d = served.meta.vector_dim
    n_cap = 2049
    rng = np.random.default_rng(seed)
    full = CodeVectors(served.meta.vector_sha256, d)
    full.learn(ItemRows(served.meta, np.arange(n_cap, dtype=np.int32),
                        np.zeros((n_cap, len(served.meta.columns)), np.uint8), np.ones(n_cap, bool),
                        rng.integers(-127, 128, (n_cap, d)).astype(np.int8),
                        rng.random(n_cap).astype(np.float32)))
    body = full.encode()
    cap_s = []
    for _ in range(200):
        t2 = time.perf_counter()
        CodeVectors.decode(body)
        cap_s.append(time.perf_counter() - t2)
    cases["cap-2049-codes"] = {"cached_codes": n_cap, "cache_bytes": len(body),
                               "decode_ms_median": 1e3 * statistics.median(cap_s), "decode_ms_min": 1e3 * min(cap_s)}
    print("cap-2049-codes", json.dumps(cases["cap-2049-codes"], default=float))
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    result = {"machine": _machine(), "tag": tag, "commit": commit or None, "threads": 1,
              # which code ran (a checkout without git, e.g. `git archive` of the commit before, has no commit)
              "store_keeps_item_vectors": hasattr(LocalStore, "load_item_vectors"),
              "dataset": {"name": "synthetic", "n_users": n_users, "n_items": n_items, "seed": seed},
              "note": "rank = DeviceSignals.fill (item rows cached in memory, no request) + Device.recommend "
                      "(offline, ExecuTorch pte); item_vectors = Device.item_vectors of the same rows alone",
              "cases": cases}
    print(f"wrote {_write(f'edge_rank-{tag}.json', result)}")


if __name__ == "__main__":
    app()
