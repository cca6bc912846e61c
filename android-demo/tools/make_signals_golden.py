#!/usr/bin/env python3
"""The Python edge client's program inputs for one phone, for the Java assembly to match exactly.

Run by ``test.sh`` once the test bundle and its item table are published on the loopback
aggregator. A device of the *Python* edge client (``edge.signals.DeviceSignals`` with
``edge.items.ItemTableClient`` against that server and an ``edge.store.LocalStore``) ranks a set
of candidates (known items, unknown ones → the OOV row, a repeated id), records a sequence of
labelled interactions one by one — each row as it would score it at that moment, then into the
log and the history —, and ranks the candidates again. The JSON holds the inputs (user codes,
item ids, item-feature codes, labels) and every ``x`` it computed:

* ``x_before`` / ``x_after``: the candidates' full rows before the first and after the last
  interaction (schema column order, item-table rows of the published table, history);
* ``rows``: the recorded rows, which must equal ``DeviceSignals.replay`` of the same log — the
  leak-free rule (each row's history from strictly earlier rows only); checked here too;
* ``x_reopened``: the candidates after reopening the store (history persisted), equal to ``x_after``.

Usage: ``python tools/make_signals_golden.py BUNDLE_DIR SERVER_URL MODEL_ID ITEMS_FILE OUT.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge.client import AggregatorClient
from edge.items import ItemTableClient
from edge.local_data import schema_of
from edge.signals import DeviceSignals
from edge.store import LocalStore
from fedpa.manifest import read_manifest
from fedpa.runtime.items import ItemTableFile

N_CANDIDATES = 40
N_STEPS = 30
SEED = 14


def main(bundle: Path, server: str, model_id: str, items_file: Path, out: Path) -> None:
    manifest = read_manifest(bundle)
    schema = schema_of(manifest)
    table = ItemTableFile.decode(items_file.read_bytes())
    rng = np.random.default_rng(SEED)
    cards = np.asarray(schema.cardinalities, np.int64)
    user_pos = list(schema.positions("user"))
    item_pos = list(schema.positions("item"))

    def codes(positions: list[int], n: int) -> np.ndarray:
        return np.stack([rng.integers(1, cards[p], n) for p in positions], axis=1).astype(np.int64)

    user = codes(user_pos, 1)[0]
    known = [str(i) for i in rng.choice(np.asarray(table.ids, dtype=object), N_CANDIDATES - 6, replace=False)]
    ids = known + [f"not-in-the-table-{k}" for k in range(4)] + [known[0], "not-in-the-table-0"]  # OOV + repeats
    item_codes = codes(item_pos, len(ids))
    # the interactions: candidates and other items, labels, strictly increasing times
    step_ids = [ids[int(k)] for k in rng.integers(0, len(ids), N_STEPS)]
    step_codes = codes(item_pos, N_STEPS)
    labels = (rng.random(N_STEPS) < 0.4).astype(np.float32)
    ts = np.cumsum(rng.integers(1, 5_000, N_STEPS)).astype(np.int64)

    def raw(item: np.ndarray) -> np.ndarray:  # user + item-feature columns; signal columns filled by the device
        x = np.zeros((len(item), len(schema.features)), np.int64)
        x[:, user_pos] = user
        x[:, item_pos] = item
        return x

    with AggregatorClient(server) as client, tempfile.TemporaryDirectory() as tmp:
        client.register(model_id)

        def device(root: Path, *, reopen: bool = False) -> DeviceSignals:
            items = ItemTableClient(client, model_id, model_version=manifest.model_version)
            store = LocalStore.open(root)
            if reopen:  # what a restarted device does: history.json, caught up with the log
                return DeviceSignals.open(store, schema, items=items)
            return DeviceSignals(store, schema, items=items)

        phone = device(Path(tmp) / "phone")
        x_before = phone.fill(raw(item_codes), ids)
        rows = []
        for k in range(N_STEPS):
            row = phone.fill(raw(step_codes[k:k + 1]), [step_ids[k]])
            phone.record(row, labels[k:k + 1], ts[k:k + 1])
            rows.append(row[0])
        x_after = phone.fill(raw(item_codes), ids)
        x_reopened = device(Path(tmp) / "phone", reopen=True).fill(raw(item_codes), ids)
        replayed = device(Path(tmp) / "replay").replay(raw(step_codes), labels, ts, step_ids)

    rows_arr = np.stack(rows)
    if not np.array_equal(rows_arr, replayed):
        raise SystemExit("recorded rows differ from DeviceSignals.replay: the golden would not be leak-free")
    if not np.array_equal(x_after, x_reopened):
        raise SystemExit("the reopened store ranks differently: history not persisted")
    if np.array_equal(x_before, x_after):
        raise SystemExit("the history did not change any candidate's codes: a weak golden")
    out.write_text(json.dumps({
        "model_id": model_id, "model_version": manifest.model_version, "table_version": table.meta.table_version,
        "user_codes": user.tolist(), "ids": ids, "item_codes": item_codes.tolist(),
        "steps": [{"id": i, "item_codes": c.tolist(), "label": int(y), "ts": int(t)}
                  for i, c, y, t in zip(step_ids, step_codes, labels, ts, strict=True)],
        "x_before": x_before.tolist(), "rows": rows_arr.tolist(), "x_after": x_after.tolist(),
        "x_reopened": x_reopened.tolist(),
        "oov_row": table.default_codes.tolist(),
    }))
    print(f"signals golden: {len(ids)} candidates, {N_STEPS} interactions, table v{table.meta.table_version} → {out}")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5]))
