"""Bytes per candidate of an item-table lookup answer: one user's 256 test candidates (issue 14).

Reads a table written by ``fedpa-export items`` and the dataset it was computed from; prints the
answer's size, the fixed row size and the shared header. Usage::

    python benchmarks/bench_item_wire.py --table items.safetensors --dataset kuaisar-r \\
        --data-dir /work/shared/data/kuaisar-r
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fedpa.data import load_dataset
from fedpa.runtime.items import ItemRows, ItemTableFile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--candidates", type=int, default=256)
    args = parser.parse_args()
    with open(args.table, "rb") as f:
        table = ItemTableFile.decode(f.read())
    ds = load_dataset(args.dataset, args.data_dir, seed=0)
    test = ds.private_test
    n = args.candidates
    ids = ds.item_ids[test.item[np.random.default_rng(0).integers(0, len(test), n)]]
    body = table.lookup(ids).encode()
    rows = ItemRows.decode(body)
    row = 4 + len(table.meta.columns) + 1 + (table.meta.vector_dim + 4 if table.meta.vector_dim else 0)
    print(json.dumps({"items": len(table), "columns": len(table.meta.columns), "vector_dim": table.meta.vector_dim,
                      "answer_bytes": len(body), "bytes_per_candidate": round(len(body) / n, 2), "row_bytes": row,
                      "header_bytes": len(body) - n * row, "known_fraction": round(float(rows.known.mean()), 3)}))


if __name__ == "__main__":
    main()
