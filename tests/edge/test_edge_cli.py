"""``fedpa-edge`` through typer's runner, against the session's real aggregator."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from edge.cli import app
from edge.local_data import read_interactions
from edge.store import LocalStore
from fedpa.data import FeatureSchema

runner = CliRunner()


def _raw_rows(schema: FeatureSchema, x: np.ndarray) -> pd.DataFrame:
    """Encoded rows back to raw values a phone would hold (vocabulary entries, bucket midpoints)."""
    columns = {}
    for j, f in enumerate(schema.features):
        if f.source not in ("user", "item"):  # signal columns are filled on the device, never read from a file
            continue
        codes = x[:, j]
        if f.kind == "vocabulary":
            columns[f.name] = [f.vocabulary[c - 1] if c > 0 else None for c in codes]
        else:  # bucketised: log1p(v) must land in bucket c, i.e. between edges c-2 and c-1
            edges = np.asarray(f.bucket_edges)
            inner = np.r_[edges[0] - 1.0, edges, edges[-1] + 1.0]
            columns[f.name] = np.expm1((inner[np.maximum(codes - 1, 0)] + inner[np.minimum(codes, len(inner) - 1)]) / 2)
    return pd.DataFrame(columns)


def test_run_then_recommend_from_a_raw_interaction_file(world, sqlite_server, tmp_path):
    from fedpa.manifest import PrivacySettings
    from fedpa.signing import generate_keypair

    key, pub = generate_keypair(tmp_path / "keys")
    world.publish(sqlite_server, "cli-run", {"round_size": 1, "min_reporters": 1, "enforce_privacy": True},
                  privacy=PrivacySettings(clip_norm=0.5, noise_multiplier=3.0, rounds=5), signing_key=key)
    ds = world.ds
    user = int(ds.private_users[3])
    rows = ds.private_train.user == user
    table = _raw_rows(ds.schema, ds.private_train.x[rows])
    table["label"] = ds.private_train.y[rows].astype(int)
    table["timestamp"] = ds.private_train.ts[rows]
    table["item_id"] = ds.item_ids[ds.private_train.item[rows]]
    csv = tmp_path / "me.csv"
    table.to_csv(csv, index=False)
    x, _, _ = read_interactions(csv, ds.schema)
    base = [j for j, f in enumerate(ds.schema.features) if f.source in ("user", "item")]
    assert np.array_equal(x[:, base], ds.private_train.x[rows][:, base])  # the raw file encodes back to the same codes
    store = tmp_path / "store"

    result = runner.invoke(app, ["run", "--server", sqlite_server.url, "--model-id", "cli-run",
                                 "--interactions", str(csv), "--store", str(store), "--rounds", "2",
                                 "--wait", "10", "--trust-key", str(pub)])

    assert result.exit_code == 0, result.output
    state = LocalStore.open(store).state
    assert state.rounds_completed == 2 and state.epsilon_spent > 0  # the bundle's LDP settings applied
    assert state.ledger == [{"mechanism": "gaussian", "noise_multiplier": 3.0, "clip_norm": 0.5}] * 2
    assert state.groups == {a: int(v) for a, v in zip(ds.schema.group_attributes, ds.user_groups[user], strict=True)}

    items = _raw_rows(ds.schema, ds.private_test.x[:30])[[f.name for f in ds.schema.features if f.source == "item"]]
    items.insert(0, "item_id", [f"video-{i}" for i in range(len(items))])  # unknown to the item table: OOV rows
    items.to_csv(tmp_path / "items.csv", index=False)
    for backend in ("pte", "onnx"):
        ranked = runner.invoke(app, ["recommend", "--store", str(store), "--candidates",
                                     str(tmp_path / "items.csv"), "-k", "5", "--backend", backend])
        assert ranked.exit_code == 0, ranked.output
        assert sum(line.count("video-") for line in ranked.output.splitlines()) == 5


def test_run_refuses_past_the_budget(world, sqlite_server, tmp_path):
    from fedpa.manifest import PrivacySettings

    world.publish(sqlite_server, "cli-budget", {"round_size": 1, "min_reporters": 1, "enforce_privacy": False},
                  privacy=PrivacySettings(clip_norm=0.5, noise_multiplier=2.0, rounds=1))
    ds = world.ds
    rows = ds.private_train.user == int(ds.private_users[4])
    np.savez(tmp_path / "me.npz", x=ds.private_train.x[rows], y=ds.private_train.y[rows],
             item_id=ds.item_ids[ds.private_train.item[rows]].astype(str))
    args = ["run", "--server", sqlite_server.url, "--model-id", "cli-budget", "--interactions",
            str(tmp_path / "me.npz"), "--store", str(tmp_path / "s"), "--epsilon", "6", "--allow-unsigned"]
    # σ = 2 per upload: ε 4.73 after one, 7.08 after two (replacement adjacency)

    first = runner.invoke(app, args)
    second = runner.invoke(app, args)

    assert first.exit_code == 0, first.output
    assert second.exit_code == 1 and "past this device's budget" in " ".join(second.output.split())
