"""Simulation benchmarks (issue 6 targets): paper-protocol wall time, scale, upload size vs GAUC.

Prints the figures and writes ``benchmarks/results/sim.json``. Targets (2 cores):
* KuaiSAR-R paper protocol (30 rounds, all private users, 1 local epoch) ≤ 60 s after data loading;
* one round over 100,000 synthetic users × 20 interactions ≤ 10 s and ≤ 8 GiB peak RSS
  (10k / 100k / 1M printed so the growth is visible; each size runs in its own process so its
  peak RSS is its own);
* upload per client per round ≤ ¼ of the research code's 4,493 fp32 floats (4,493 bytes) at equal GAUC.

Usage: ``python benchmarks/bench_sim.py --data-dir ../shared/data [--sections paper,scale,upload]``.
Timings are wall-clock on a shared machine: the load average at each measurement is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
RESEARCH_UPLOAD_FLOATS = 4493  # the research code's per-client upload (fp32 floats)
TARGET_UPLOAD_BYTES = RESEARCH_UPLOAD_FLOATS * 4 / 4  # a quarter of its bytes


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores_visible": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "load_average": os.getloadavg()}


def tuned(dataset: str, method: str) -> dict:
    """The validation-tuned settings the experiments chose (defaults if they have not run)."""
    path = RESULTS / f"sim-{dataset}-results.json"
    if path.is_file():
        return json.loads(path.read_text())["tuned"].get(method, {})
    return {}


def student_for(ds, seed: int, cache: Path):
    from fedpa.sim.experiments import cached_student

    return cached_student(ds, seed=seed, cache_dir=cache / ds.name / "students")  # shared with `experiments`


def paper(data_dir: Path, cache: Path) -> dict:
    from fedpa.data import load_dataset
    from fedpa.sim.experiments import ExperimentConfig, run_trial

    t = time.perf_counter()
    ds = load_dataset("kuaisar-r", data_dir / "kuaisar-r", seed=0)
    load_s = time.perf_counter() - t
    student = student_for(ds, 0, cache)
    out = {"load_seconds": load_s, "methods": {}}
    for method in ("fedpa", "fedpa-paper", "fedavg-full"):
        trial = tuned("kuaisar-r", method)
        t = time.perf_counter()
        r = run_trial(ds, student, method, trial, ExperimentConfig(), seed=0)
        wall = time.perf_counter() - t
        out["methods"][method] = {
            "wall_seconds": wall, "rounds": r.rounds, "clients": r.info["clients"], "trial": trial,
            "train_seconds_per_round": float(np.mean([p["round_seconds"] for p in r.curve[1:]])),
            "eval_seconds_per_round": float(np.mean([p["eval_seconds"] for p in r.curve[1:]])),
            "test_gauc": r.test["gauc"], "load_average": os.getloadavg()}
        print(f"paper protocol {method}: {wall:.1f} s wall for {r.rounds} rounds × {r.info['clients']} clients "
              f"(target ≤ 60 s; data loading {load_s:.1f} s excluded)", flush=True)
    return out


def lean_synthetic(n_users: int, per_user: int = 20, seed: int = 0) -> SimpleNamespace:
    """Synthetic users with exactly ``per_user`` rows, in numpy only (the schema of ``synthetic``).

    Why: the pandas-based generator needs several GiB of Python strings at 1M users; this keeps the
    measurement about the simulation. Labels are random: only time and memory are measured here.
    """
    from fedpa.data import load_dataset
    from fedpa.data.dataset import Interactions

    schema = load_dataset("synthetic", seed=seed, n_users=50).schema
    cards = np.asarray(schema.cardinalities)
    n_user = len(schema.user_feature_positions)
    rng = np.random.default_rng(seed)
    user_x = rng.integers(1, cards[:n_user], size=(n_users, n_user))
    n_train, n_val = int(0.6 * per_user), int(0.2 * per_user)

    def part(rows: int) -> Interactions:
        user = np.repeat(np.arange(n_users), rows)
        items = rng.integers(1, cards[n_user:], size=(user.size, cards.size - n_user))
        x = np.concatenate([user_x[user], items], axis=1)
        y = (rng.random(user.size) < 0.4).astype(np.float32)
        return Interactions(user=user, item=np.zeros_like(user), x=x, y=y, ts=np.zeros_like(user))

    return SimpleNamespace(name="synthetic-lean", schema=schema, user_groups=user_x[:, list(schema.group_positions)],
                           private_users=np.arange(n_users), private_train=part(n_train),
                           private_val=part(n_val), private_test=part(per_user - n_train - n_val))


def scale_one(n_users: int, generator: str) -> dict:
    """One round of `fedpa` over n_users synthetic users (all private) × ~20 interactions each."""
    from fedpa.data import load_dataset
    from fedpa.model import Backbone, student_config
    from fedpa.schedule import LocalTraining
    from fedpa.sim.engine import Population
    from fedpa.sim.layout import ClientRows
    from fedpa.sim.methods import build_program, get_method
    from fedpa.sim.rounds import run_round
    from fedpa.sim.runner import SimConfig

    t = time.perf_counter()
    if generator == "lean":
        ds = lean_synthetic(n_users)
    else:
        ds = load_dataset("synthetic", seed=0, n_users=n_users, interactions_per_user=20, pool_fraction=0.0,
                          rest_fraction=0.0)
    users = np.asarray(ds.private_users)
    train = ClientRows.from_split(ds.private_train, users)
    data_s = time.perf_counter() - t
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    torch.manual_seed(0)
    student = Backbone(student_config(ds.schema.cardinalities, len(ds.schema.user_feature_positions)))
    method = get_method("fedpa")
    program = build_program(method, student, ds.schema, ds.user_groups[users], seed=0)
    pop = Population(program.private_init, users.size, program.spec, program.bank, program.group_values)
    config = SimConfig(rounds=1)
    local = LocalTraining(lr=method.lr, batch_size=method.batch_size, epochs=1)  # the method's tuned lr, 1 epoch
    part = np.flatnonzero(train.counts > 0)
    t = time.perf_counter()
    report, _, _ = run_round(program, pop, train, part, config, local, round=0)
    round_s = time.perf_counter() - t
    load = os.getloadavg()
    from fedpa.sim.engine import predict
    from fedpa.sim.layout import segment_length, segments

    val = ClientRows.from_split(ds.private_val, users)
    t = time.perf_counter()
    predict(program.forward, pop.params, val, segments(val, length=segment_length(val.counts)))
    eval_s = time.perf_counter() - t
    return {"generator": generator, "users": int(users.size), "train_rows": int(train.x.shape[0]),
            "data_seconds": data_s,
            "round_seconds": round_s, "eval_val_seconds": eval_s, "groups_updated": len(report.updated),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "rss_after_data_gib": rss_data, "load_average": load}


def scale(sizes: list[int], timeout: int, generator: str) -> dict:
    out = {}
    for n in sizes:
        cmd = [sys.executable, __file__, "--scale-one", str(n), "--generator", generator]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            out[str(n)] = json.loads(lines[-1]) if done.returncode == 0 and lines else {
                "skipped": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
        except subprocess.TimeoutExpired:
            out[str(n)] = {"skipped": f"did not finish within {timeout} s"}
        r = out[str(n)]
        if "skipped" in r:
            print(f"scale [{generator}] {n:>9,} users: skipped ({r['skipped']})", flush=True)
        else:
            print(f"scale [{generator}] {n:>9,} users: round {r['round_seconds']:.2f} s (train + upload + aggregate), "
                  f"eval(val) {r['eval_val_seconds']:.2f} s, peak RSS {r['peak_rss_gib']:.2f} GiB "
                  f"(data {r['rss_after_data_gib']:.2f} GiB), data {r['data_seconds']:.1f} s, "
                  f"load avg {r['load_average'][0]:.1f}", flush=True)
    return out


def upload(data_dir: Path, cache: Path) -> dict:
    from fedpa.data import load_dataset
    from fedpa.sim.methods import get_method
    from fedpa.sim.runner import SimConfig, simulate
    from fedpa.sim.server import AggregationConfig

    ds = load_dataset("kuaisar-r", data_dir / "kuaisar-r", seed=0)
    student = student_for(ds, 0, cache)
    trial = dict(tuned("kuaisar-r", "fedpa"))
    server_lr = float(trial.pop("server_lr", 1.0))
    options = [("fp32", False, 4), ("fp16", False, 4), ("int8", False, 4), ("fp16", True, 4), ("int8", True, 4),
               ("fp16", True, 2), ("int8", True, 2), ("fp32", True, 1)]
    rows = []
    for dtype, packed, rank in options:
        r = simulate(ds, student, get_method("fedpa", **{**trial, "rank": rank}),
                     SimConfig(rounds=30, wire_dtype=dtype, packed=packed,
                               aggregation=AggregationConfig(server_lr=server_lr)))
        row = {"wire_dtype": dtype, "packed": packed, "rank": rank, "upload_bytes": r.upload_bytes_per_client_round,
               "shared_floats": r.info["shared_floats_per_client"], "val_gauc": r.val["gauc"],
               "test_gauc": r.test["gauc"], "test_auc": r.test["auc"],
               "meets_target": r.upload_bytes_per_client_round <= TARGET_UPLOAD_BYTES}
        rows.append(row)
        print(f"upload {dtype:>4} packed={packed!s:5} rank={rank}: {row['upload_bytes']:>7,.0f} B/client/round "
              f"({row['shared_floats']} floats), val GAUC {row['val_gauc']:.4f}, test GAUC {row['test_gauc']:.4f}"
              f"{'  ≤ target' if row['meets_target'] else ''}", flush=True)
    return {"target_bytes": TARGET_UPLOAD_BYTES, "research_code_bytes": RESEARCH_UPLOAD_FLOATS * 4, "rows": rows}


def ceiling(data_dir: Path, cache: Path) -> dict:
    """How much GAUC the features allow at all: centralised fine-tuning on every private train row.

    No privacy, no federation: the whole student fine-tuned (Adam) on the pooled private train split,
    early-stopped on private validation GAUC. If this barely beats FM-only, no federated method can
    gain much either. Also a per-user memorisation score (the user's smoothed click rate on the
    item's value of one feature), the within-user signal a private adapter could pick up.
    """
    import copy

    from fedpa.data import load_dataset
    from fedpa.metrics import evaluate

    out = {}
    for name, sub in (("kuaisar-r", "kuaisar-r"), ("kuairand", "kuairand-pure")):
        ds = load_dataset(name, data_dir / sub, seed=0)
        student = student_for(ds, 0, cache)
        splits = {s: getattr(ds, f"private_{s}") for s in ("train", "val", "test")}

        def gauc(model, split):
            with torch.no_grad():
                return evaluate(split.user, split.y, model(torch.from_numpy(split.x)).numpy())["gauc"]

        row = {"fm_only": {"val": gauc(student, splits["val"]), "test": gauc(student, splits["test"])}}
        x, y = torch.from_numpy(splits["train"].x), torch.from_numpy(splits["train"].y)
        for lr in (1e-3, 3e-3):
            torch.manual_seed(0)
            model = copy.deepcopy(student).requires_grad_(True)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            rng = np.random.default_rng(0)
            best = {"val": -1.0}
            for epoch in range(1, 21):
                for idx in np.array_split(rng.permutation(len(y)), max(1, len(y) // 256)):
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                val = gauc(model, splits["val"])
                if val > best["val"]:
                    best = {"val": val, "test": gauc(model, splits["test"]), "epoch": epoch}
            row[f"central_finetune_lr{lr:g}"] = best
        tr = splits["train"]
        rate = np.bincount(tr.user, weights=tr.y, minlength=ds.n_users) / np.maximum(
            np.bincount(tr.user, minlength=ds.n_users), 1)
        for f in ds.schema.item_feature_positions:
            key = tr.user * 1_000_003 + tr.x[:, f]
            uniq, inv = np.unique(key, return_inverse=True)
            clicks, count = np.bincount(inv, weights=tr.y), np.bincount(inv)

            def memo(split, f=f, uniq=uniq, clicks=clicks, count=count, rate=rate):
                k = split.user * 1_000_003 + split.x[:, f]
                pos = np.clip(np.searchsorted(uniq, k), 0, len(uniq) - 1)
                hit = uniq[pos] == k
                prior = rate[split.user]
                p = np.clip(np.where(hit, (clicks[pos] + 2 * prior) / (count[pos] + 2), prior), 1e-4, 1 - 1e-4)
                return evaluate(split.user, split.y, np.log(p / (1 - p)))["gauc"]

            row[f"user_x_{ds.schema.names[f]}"] = {"val": memo(splits["val"]), "test": memo(splits["test"])}
        out[name] = row
        best_central = max((v for k, v in row.items() if k.startswith("central")), key=lambda v: v["val"])
        print(f"ceiling {name}: FM-only test GAUC {row['fm_only']['test']:.4f}; centralised fine-tuning "
              f"(val-selected) {best_central['test']:.4f}; best per-user memorisation "
              f"{max(v['test'] for k, v in row.items() if k.startswith('user_x')):.4f}", flush=True)
    return out


def ldp(data_dir: Path, cache: Path) -> dict:
    """Utility against ε (docs/design.md §4): fedpa on KuaiSAR-R seed 0 with Gaussian LDP on every upload.

    C = 0.1 is about the median L2 norm of a client's shared delta in round 1 (measured: 10th/50th/
    90th percentiles 0.03 / 0.09 / 0.23); σ is the smallest giving ε after 30 rounds at δ = 1e-5.
    """
    from fedpa.data import load_dataset
    from fedpa.privacy import PrivacyConfig, noise_multiplier_for
    from fedpa.sim.methods import get_method
    from fedpa.sim.runner import SimConfig, simulate
    from fedpa.sim.server import AggregationConfig

    ds = load_dataset("kuaisar-r", data_dir / "kuaisar-r", seed=0)
    student = student_for(ds, 0, cache)
    trial = dict(tuned("kuaisar-r", "fedpa"))
    server_lr = float(trial.pop("server_lr", 1.0))
    rows = []
    for epsilon in (1.0, 8.0, 64.0, None):
        privacy = None if epsilon is None else PrivacyConfig(
            clip_norm=0.1, noise_multiplier=noise_multiplier_for(epsilon, 30, delta=1e-5), delta=1e-5)
        r = simulate(ds, student, get_method("fedpa", **trial),
                     SimConfig(rounds=30, privacy=privacy, aggregation=AggregationConfig(server_lr=server_lr)))
        row = {"epsilon_target": epsilon, "epsilon": r.info.get("epsilon"),
               "noise_multiplier": None if privacy is None else privacy.noise_multiplier,
               "test_gauc": r.test["gauc"], "test_auc": r.test["auc"], "val_gauc": r.val["gauc"]}
        rows.append(row)
        print(f"ldp ε={epsilon}: σ={row['noise_multiplier']}, test GAUC {row['test_gauc']:.4f}, "
              f"AUC {row['test_auc']:.4f}", flush=True)
    return {"clip_norm": 0.1, "delta": 1e-5, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("FEDPA_DATA_DIR", "../shared/data")))
    parser.add_argument("--sections", default="paper,scale,upload,ceiling,ldp")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--scale-timeout", type=int, default=900)
    parser.add_argument("--cache", type=Path, default=Path("runs/sim"), help="experiments' out-dir root")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generator", default="lean", choices=("lean", "fedpa"),
                        help="scale data: numpy-only (lean) or fedpa.data's synthetic generator")
    parser.add_argument("--scale-one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.scale_one is not None:
        print(json.dumps(scale_one(args.scale_one, args.generator)))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "sim.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results["machine"] = machine()
    sections = args.sections.split(",")
    if "paper" in sections:
        results["paper_protocol_kuaisar_r"] = paper(args.data_dir, args.cache)
    if "scale" in sections:
        results[f"scale_one_round_{args.generator}"] = scale([int(s) for s in args.sizes.split(",")],
                                                             args.scale_timeout, args.generator)
    if "ceiling" in sections:
        results["gauc_ceiling"] = ceiling(args.data_dir, args.cache)
    if "ldp" in sections:
        results["ldp_kuaisar_r"] = ldp(args.data_dir, args.cache)
    if "upload" in sections:
        results["upload_tradeoff_kuaisar_r"] = upload(args.data_dir, args.cache)
    path.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
