"""Issue 14's gap diagnosis: how far the federated adapters get from open-only to central training.

The reference is the model a central server would train on **everyone's** training rows (open and
private users), with the same inputs (item statistics from open users) and the same recipe
(teacher pre-trained, student distilled, early stopping on validation AUC — here the open *and*
private validation rows). FM-only is the same recipe on open users only. Between them:

* ``central``: the frozen open student plus trainable parts fitted with Adam on all private users'
  *pooled* training rows (no federation, no LDP), early stopping on the private validation AUC.
  ``adapters`` = FedPA's structure with one global adapter (low-rank on the hidden layers + gate);
  ``full`` = every student tensor; ``no-emb`` = tower and head, embeddings frozen; ``emb`` =
  embeddings only. This separates capacity (what the adapters can express) from federation.
* ``fed``: ``fedpa`` in the simulation without LDP over a grid of lr / server lr / local epochs / rounds.

Everything here reads the private **validation** split only (round and epoch picked on it too, so
the numbers are optimistic by the pick); the test split is read once per final setting by
``bench_increments.py``.

Usage: ``python benchmarks/bench_gap.py --dataset kuairand --data-dir ../shared/data/kuairand-pure``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fedpa.data import load_dataset
from fedpa.data.dataset import Dataset, Interactions
from fedpa.metrics import evaluate
from fedpa.model import AdapterConfig, Backbone, FedPARecommender
from fedpa.sim.experiments import cached_student
from fedpa.sim.methods import get_method
from fedpa.sim.runner import SimConfig, SimResult, simulate
from fedpa.sim.server import AggregationConfig
from fedpa.train import predict


def _scores(model: torch.nn.Module, split: Interactions) -> dict[str, float]:
    return evaluate(split.user, split.y, predict(model, split.x))


def central_fit(ds: Dataset, student: Backbone, variant: str, *, seed: int, lr: float = 3e-3,
                epochs: int = 40, patience: int = 4, batch_size: int = 256) -> dict[str, Any]:
    """Fit ``variant``'s trainable tensors on the private users' pooled train rows (Adam, early stop on val GAUC)."""
    torch.manual_seed(seed)
    if variant.startswith("adapters"):
        rank = int(variant.split("-r")[1]) if "-r" in variant else 4
        config = AdapterConfig(group_attributes=("global",), group_cardinalities=(1,), rank=rank,
                               gate_mode="residual")
        model: torch.nn.Module = FedPARecommender(copy.deepcopy(student), config)
        params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    else:
        model = copy.deepcopy(student)
        model.requires_grad_(True)
        names = {"full": lambda n: True, "no-emb": lambda n: not n.startswith("embedding"),
                 "emb": lambda n: n.startswith("embedding"), "head": lambda n: n.startswith("head")}[variant]
        params = []
        for n, p in model.named_parameters():
            p.requires_grad_(names(n))
            if names(n):
                params.append(p)
    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    train = ds.private_train
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    best = (_scores(model, ds.private_val), 0, copy.deepcopy(model.state_dict()))
    stale = 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.from_numpy(rng.permutation(len(train)))
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = F.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val = _scores(model, ds.private_val)
        if val["gauc"] > best[0]["gauc"]:
            best, stale = (val, epoch, copy.deepcopy(model.state_dict())), 0
        else:
            stale += 1
            if stale >= patience:
                break
    model.load_state_dict(best[2])
    return {"variant": variant, "lr": lr, "best_epoch": best[1], "val": best[0], "model": model}


def fed(ds: Dataset, student: Backbone, trial: dict[str, Any], *, seed: int) -> SimResult:
    """``fedpa`` (or ``trial['method']``) without LDP; ``trial``: lr, server_lr, epochs, rounds, method fields."""
    t = dict(trial)
    method = t.pop("method", "fedpa")
    config = SimConfig(rounds=t.pop("rounds", 30), local_epochs=t.pop("epochs", 1), seed=seed,
                       aggregation=AggregationConfig(server_lr=t.pop("server_lr", 1.0)), select="gauc")
    return simulate(ds, student, get_method(method, **t), config)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--without", default="")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--central", default="adapters,full,no-emb,emb")
    p.add_argument("--fed", action="append", default=[], help="JSON trial for the federated grid")
    p.add_argument("--show-test", action="store_true", help="also print the test GAUC per round (diagnosis only)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    cache = Path("runs/increments") / args.dataset
    out: dict[str, Any] = {"dataset": args.dataset, "without": args.without, "seeds": {}}
    start = time.perf_counter()
    for seed in args.seeds:
        ds = load_dataset(args.dataset, args.data_dir, seed=seed, without=args.without)
        student = cached_student(ds, seed=seed, cache_dir=cache)
        ref = cached_student(ds, seed=seed, cache_dir=cache, rows="everyone")
        row: dict[str, Any] = {
            "fm-only": _scores(student, ds.private_val)["gauc"],
            "reference (everyone)": _scores(ref, ds.private_val)["gauc"],
        }
        print(f"seed {seed} val GAUC: {row} ({time.perf_counter() - start:.0f}s)", flush=True)
        for v in [c for c in args.central.split(",") if c]:
            r = central_fit(ds, student, v, seed=seed)
            row[f"central {v}"] = r["val"]["gauc"]
            print(f"seed {seed} central {v}: val GAUC {r['val']['gauc']:.4f} (epoch {r['best_epoch']}) "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
        for raw in args.fed:
            trial = json.loads(raw)
            r = fed(ds, student, trial, seed=seed)
            row[f"fed {raw}"] = r.val["gauc"]
            curve = " ".join(f"{p['val']['gauc']:.4f}" for p in r.curve[::3])
            if args.show_test:  # only to explain a validation/test disagreement of a setting already read on test
                curve += " | test: " + " ".join(f"{p['test']['gauc']:.4f}" for p in r.curve[::3])
            by_auc = max(r.curve[1:], key=lambda p: p["val"]["auc"])
            print(f"seed {seed} fed {raw}: val GAUC {r.val['gauc']:.4f} (round {r.best_round}); at best val AUC "
                  f"round {by_auc['round']}: {by_auc['val']['gauc']:.4f}; every 3rd round: {curve} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
        out["seeds"][seed] = row
    if args.out:
        args.out.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
