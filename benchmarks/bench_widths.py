"""Embedding widths of the full-input student: validation GAUC and bundle size per variant (issue 14, §2b).

The bundle's size is set by the student's input width (first layer, adapters, shared bank, golden
vectors) and by the embedding tables, which each of the three programs holds once. This script
measures what narrowing costs in quality before a width becomes the default: per seed, one teacher
is pre-trained on open users and every variant's student is distilled from that same teacher
(``fedpa.train`` defaults), then scored on the **validation** splits only (open users: the
early-stopping split; private users: the split FedPA settings are chosen on). With ``--bundle`` each
variant is also exported and its bundle size recorded.

Variants (``--variants``, comma-separated): ``wide`` (every column 8 dims, the student before),
``stats<N>`` (the statistic columns at N dims, the item code at 8; ``stats4`` is the default
student), ``all<N>`` (statistics and the item code at N).

Usage: ``OMP_NUM_THREADS=1 nice python benchmarks/bench_widths.py --dataset kuaisar-r
--data-dir ../shared/data/kuaisar-r [--seeds 1] [--bundle]``. Writes ``benchmarks/results/widths-<dataset>.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from fedpa.data import FeatureSchema, load_dataset
from fedpa.metrics import auc, gauc
from fedpa.model import BackboneConfig
from fedpa.train import default_student_config, distill, predict, pretrain

RESULTS = Path(__file__).parent / "results"


def variant_config(schema: FeatureSchema, variant: str) -> BackboneConfig:
    """The student architecture of one variant: ``wide``, ``stats<N>`` or ``all<N>``."""
    config = default_student_config(schema)
    with_code = config.n_signal_features + int("item_code" in schema.names)
    if variant == "wide":
        return replace(config, n_signal_features=0)
    for prefix, n in (("stats", config.n_signal_features), ("all", with_code)):
        width = variant.removeprefix(prefix)
        if variant.startswith(prefix) and width.isdigit() and int(width) >= 1:
            return replace(config, n_signal_features=n, signal_dim=int(width))
    raise SystemExit(f"error: unknown variant {variant!r}; expected wide, stats<N> or all<N> (e.g. stats4)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--variants", default="wide,stats4,stats2,all2")
    p.add_argument("--bundle", action="store_true", help="also export each variant and record its bundle size")
    args = p.parse_args()
    torch.set_num_threads(1)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    rows: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        ds = load_dataset(args.dataset, args.data_dir, seed=seed)
        teacher = pretrain(ds, seed=seed).model
        for variant in variants:
            start = time.perf_counter()
            config = variant_config(ds.schema, variant)
            student = distill(ds, teacher, config, seed=seed).model
            row: dict[str, Any] = {"seed": seed, "variant": variant, "input_dim": config.input_dim,
                                   "parameters": sum(p.numel() for p in student.parameters())}
            for split in ("open_val", "private_val"):
                part = ds.split(split)
                score = predict(student, part.x)
                row[split] = {"gauc": gauc(part.user, part.y, score), "auc": auc(part.y, score)}
            if args.bundle:
                from export.bundle import build_bundle
                from export.verify import summarise

                with tempfile.TemporaryDirectory() as tmp:
                    build_bundle(student, ds.schema, Path(tmp) / "bundle", model_id="widths")
                    info = summarise(Path(tmp) / "bundle")
                row["bundle"] = {"total_bytes": info["total_bytes"], "files": info["files"]}
            row["seconds"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            print(f"seed {seed} {variant}: open val GAUC {row['open_val']['gauc']:.4f}, private val GAUC "
                  f"{row['private_val']['gauc']:.4f}" + (f", bundle {row['bundle']['total_bytes']:,} B"
                                                        if "bundle" in row else ""), flush=True)
    out = RESULTS / f"widths-{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "load_average": os.getloadavg(),
                               "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
