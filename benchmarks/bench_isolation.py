"""Per-upload isolation on the intake's hot path: an infallible batch vs a SAVEPOINT per upload (issue 16).

Two ways to keep one bad upload from failing the others stored in the same transaction:

* ``infallible`` (what ``aggregator.services.intake_sql`` does): everything the INSERT could fail on is
  refused at validation, so a batch is one multi-row INSERT per wave plus one bucket UPDATE;
* ``savepoint``: each upload gets ``SAVEPOINT`` / its own one-row INSERT / ``RELEASE`` (a failure
  would roll back to its savepoint only), plus the same bucket UPDATE.

Both store the same batches of ``--batch`` ~18 KB uploads of distinct devices on PostgreSQL (a
fresh schema, dropped afterwards), alternating so that the machine's load hits both alike; the
figure is uploads stored per second of transaction time (median over ``--rounds``).

Usage: ``python benchmarks/bench_isolation.py [--batch 64] [--batches 20] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from bench_aggregator import NONCE_LEN, body_template, write_bundle

from aggregator.core.config import Settings
from aggregator.db import Database, Script
from aggregator.schemas import RoundConfig
from aggregator.services.catalog import Catalog
from aggregator.services.devices import hash_token, register_device
from aggregator.services.intake_sql import (
    _COLUMNS,
    Limits,
    PendingUpdate,
    _insert_sql,
    _take_tokens_sql,
    groups_key,
    store_script,
)
from aggregator.services.publishing import publish_bundle
from fedpa.wire import decode_update

DSN = "postgresql://postgres@127.0.0.1:5432/test"
LIMITS = Limits(per_minute=6_000_000, burst=1_000_000)  # as the load benchmark: the bucket UPDATE runs


def savepoint_script(batch: Sequence[PendingUpdate], *, now: float) -> Script[int]:
    """The same batch, each upload in its own savepoint (distinct devices: one wave)."""
    bucket = {"now": now, "rate": LIMITS.per_minute / 60.0, "burst": float(LIMITS.burst)}
    stored = 0
    for i, u in enumerate(batch):
        assert u.meta is not None and u.info is not None
        meta = u.meta
        values = (u.info.pk, meta.model_version, u.device_pk, meta.nonce, meta.base_version, groups_key(meta.groups),
                  meta.example_count, meta.privacy.model_dump_json(), u.body, len(u.body), u.received_at,
                  u.info.config.max_staleness)
        yield f"SAVEPOINT u{i}", {}
        stored += len((yield _insert_sql(1, True), {**bucket, **{f"{c}_0": v for c, v in zip(_COLUMNS, values,
                                                                                              strict=True)}}))
        yield f"RELEASE SAVEPOINT u{i}", {}
    yield _take_tokens_sql(len(batch)), {**bucket, **{f"device_{i}": u.device_pk for i, u in enumerate(batch)}}
    return stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "isolation.json")
    args = parser.parse_args()
    schema = f"bench_iso_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    db = Database(Settings(database_url=url))
    try:
        db.migrate()
        with tempfile.TemporaryDirectory() as tmp:
            write_bundle(Path(tmp), "iso")
            publish_bundle(db, Path(tmp), config={"mode": "async", "buffer_size": 1_000_000, "deadline_s": None,
                                                  "max_staleness": 1_000_000}, defaults=RoundConfig())
        with db.sessions() as session:
            info = Catalog().current(session, "iso")
        pks = []
        for _ in range(args.batch):
            token = register_device(db, "iso", burst=LIMITS.burst).token
            pks.append(db.read_one("SELECT id FROM devices WHERE token_hash = :h",
                                   {"h": hash_token(token)})[0])
        templates = [body_template("iso", {"age": i % 5, "region": i % 4}, i) for i in range(args.batch)]
        counter = iter(range(10**9))

        def batch() -> list[PendingUpdate]:
            out = []
            for pk, (prefix, suffix) in zip(pks, templates, strict=True):
                body = prefix + f"{next(counter):0{NONCE_LEN}d}".encode() + suffix
                out.append(PendingUpdate(info, decode_update(body)[0], pk, body, time.time()))
            return out

        rates: dict[str, list[float]] = {"infallible": [], "savepoint": []}
        for _ in range(args.rounds):
            for variant in rates:
                batches = [batch() for _ in range(args.batches)]
                start = time.perf_counter()
                for b in batches:
                    if variant == "infallible":
                        db.run(store_script(db, b, limits=LIMITS, now=time.time()))
                    else:
                        db.run(savepoint_script(b, now=time.time()))
                rates[variant].append(args.batch * args.batches / (time.perf_counter() - start))
    finally:
        db.dispose()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    report = {"machine": platform.platform(), "args": vars(args) | {"out": str(args.out)},
              "uploads_per_s": {k: {"median": statistics.median(v), "runs": v} for k, v in rates.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for k, v in rates.items():
        print(f"{k:>10}: {statistics.median(v):8.0f} uploads/s stored (median of {len(v)}; runs "
              f"{', '.join(f'{x:.0f}' for x in v)})")


if __name__ == "__main__":
    main()
