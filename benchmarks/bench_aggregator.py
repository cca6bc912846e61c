"""Load benchmark of the aggregator (issue 7 targets), loopback only, bounded in time.

First, once, PostgreSQL alone: durable single-row inserts of the same size at ``--rate``/s on one
connection → p50/p99, the floor this machine's database sets for any server in front of it. Then,
for 1 and 2 uvicorn workers on PostgreSQL, each on a fresh schema (dropped afterwards), after a
``CHECKPOINT`` (superuser) so no configuration starts amid flushing the previous one's writes:

1. open loop: requests start on a fixed schedule at ``--rate``/s (default 500) regardless of
   answers; latency is measured from the *scheduled* start (no coordinated omission) → p50/p99
   and CPU per upload at that rate; then the same on a model whose buffer never fills (intake
   alone, no aggregation). Measured first, so that 500/s is measured with its own aggregations and
   not in the aftermath of the saturation test below (autovacuum, checkpoints, a backlog);
2. closed loop: ``--clients`` devices (default 200), each with its own token and keep-alive
   connection, upload ~18 KB safetensors updates back to back for ``--duration`` s → uploads/s,
   with aggregations of 1,000 updates running meanwhile; then it waits until aggregation has
   caught up (fewer than ``buffer_size`` pending, used payloads dropped) and reports that backlog;
   then the same load for ``--intake-duration`` s on the intake-only model;
3. aggregation: 1,000 pending updates of a third model closed by the admin endpoint → time;
4. zero lost updates: after a final flush, the 202s counted by the clients == rows accepted ==
   rows aggregated, for every model.

The model runs in async (buffered) mode with ``buffer_size`` 1,000 (``--buffer-size``), so aggregations happen during
the load, as they would in production. The load generator is a minimal asyncio HTTP/1.1 client
(uvloop, pre-built request bytes) on the same machine, so its CPU cost is counted against the
server's — as the issue asks.

Usage: ``python benchmarks/bench_aggregator.py [--duration 15] [--workers 1 2] [--aggregation-in-workers]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import psycopg

from aggregator.models import UNSCRUBBED
from fedpa.manifest import FileEntry, Manifest, PrivacySettings, sha256_file
from fedpa.payload import encode_tensors
from fedpa.protocol import UpdateMeta, UpdatePrivacy
from fedpa.state import InitialBank, SharedStateSpec
from fedpa.wire import MANIFEST_NAME, SHARED_STATE_FILE, encode_update
from harness.server_process import AggregatorProcess

ADMIN_TOKEN = secrets.token_urlsafe(32)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NONCE_LEN = 24
PRIVACY = UpdatePrivacy(mechanism="gaussian", clip_norm=1.0, noise_multiplier=1.0, epsilon_spent=1.0, delta=1e-5)

# Two FedPA layers: gate 64→16→4, two grouping attributes with rank-4 adapters.
# A device's share (gate + its two groups) is 4,224 float32 ≈ 17 KB of tensors, ≈ 18 KB on the wire.
SPEC = SharedStateSpec.build(
    gate=[(f"layers.{i}.gate.{n}", s) for i in range(2) for n, s in (("w1", (16, 64)), ("w2", (4, 16)))],
    group=[(f"layers.{i}.groups.{a}.lora_{m}", a, s) for i in range(2) for a in ("age", "region")
           for m, s in (("A", (4, 64)), ("B", (64, 4)))],
    cardinalities={"age": 5, "region": 4},
    # as a bundle's law: the gates' w1 and the adapters' A drawn from the seed, the rest stored
    initial=InitialBank(seed=0, drawn={**{f"layers.{i}.gate.w1": 0.125 for i in range(2)},
                                       **{f"layers.{i}.groups.{a}.lora_A": 0.25 for i in range(2)
                                          for a in ("age", "region")}}),
)


def write_bundle(root: Path, model_id: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shapes = {t.param: t.shape for t in SPEC.tensors}
    stored = {p: (0.1 * rng.normal(size=shapes[p])).astype(np.float32) for p in SPEC.stored_names}
    path = root / SHARED_STATE_FILE
    path.write_bytes(encode_tensors(stored))
    files = {SHARED_STATE_FILE: FileEntry(sha256=sha256_file(path), size=path.stat().st_size)}
    manifest = Manifest(model_id=model_id, model_version=1, created_at="2026-01-01T00:00:00Z", feature_schema={},
                        backbone={}, adapter={}, shared_state=SPEC, private_tensors=(),
                        privacy=PrivacySettings(noise_multiplier=1.0), files=files)
    (root / MANIFEST_NAME).write_text(manifest.to_json())


def body_template(model_id: str, groups: dict[str, int], seed: int) -> tuple[bytes, bytes]:
    """(prefix, suffix) of a safetensors body around a fixed-length nonce placeholder."""
    rng = np.random.default_rng(seed)
    deltas = {t.name: (0.01 * rng.normal(size=t.shape)).astype(np.float32) for t in SPEC.for_groups(groups)}
    placeholder = "N" * NONCE_LEN
    meta = UpdateMeta(model_id=model_id, model_version=1, base_version=0, groups=groups, example_count=10,
                      nonce=placeholder, privacy=PRIVACY)
    body = encode_update(deltas, meta)
    i = body.index(placeholder.encode())
    return body[:i], body[i + NONCE_LEN :]


class Device:
    """One simulated phone: token, pre-built request bytes, a nonce counter."""

    def __init__(self, index: int, model_id: str, token: str, port: int) -> None:
        groups = {"age": index % 5, "region": index % 4}
        self.prefix, self.suffix = body_template(model_id, groups, index)
        self.head = (f"POST /v1/models/{model_id}/updates HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {len(self.prefix) + NONCE_LEN + len(self.suffix)}\r\n\r\n").encode()
        self.tag = f"{index:05d}{uuid.uuid4().hex[:5]}"
        self.sent = 0

    def request(self) -> bytes:
        self.sent += 1
        nonce = f"{self.tag}{self.sent:0{NONCE_LEN - len(self.tag)}d}".encode()
        return b"".join((self.head, self.prefix, nonce, self.suffix))


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def closed_loop(port: int, devices: list[Device], duration: float) -> dict:
    """Every device uploads back to back on its own connection for ``duration`` seconds."""
    counts: dict[int, int] = {}
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration

    async def run(device: Device) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            status = await _roundtrip(reader, writer, device.request())
            latencies.append(time.perf_counter() - t0)
            counts[status] = counts.get(status, 0) + 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(run(d) for d in devices))
    elapsed = time.perf_counter() - t0
    return {"elapsed_s": elapsed, "status": counts, "accepted": counts.get(202, 0),
            "uploads_per_s": counts.get(202, 0) / elapsed, **_percentiles(latencies)}


async def open_loop(port: int, devices: list[Device], rate: float, duration: float) -> dict:
    """Requests start every 1/rate s on idle connections; latency counts from the scheduled start."""
    counts: dict[int, int] = {}
    latencies: list[float] = []
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    pending: set[asyncio.Task] = set()

    async def one(device: Device, scheduled: float) -> None:
        conn = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        data = device.request()
        try:
            status = await _roundtrip(*conn, data)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closed a connection idle past its keep-alive timeout: resend on a fresh
            # one. Same nonce, so a 409 means the first copy was stored after all.
            conn = await asyncio.open_connection("127.0.0.1", port)
            status = await _roundtrip(*conn, data)
            status = 202 if status == 409 else status
            counts["reconnects"] = counts.get("reconnects", 0) + 1  # type: ignore[index]
        latencies.append(time.perf_counter() - scheduled)
        counts[status] = counts.get(status, 0) + 1
        idle.append(conn)

    for _ in range(min(len(devices), 64)):
        idle.append(await asyncio.open_connection("127.0.0.1", port))
    start = time.perf_counter()
    n = int(rate * duration)
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(devices[i % len(devices)], scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - start
    for _, writer in idle:
        writer.close()
    return {"offered_per_s": rate, "elapsed_s": elapsed, "status": counts, "accepted": counts.get(202, 0),
            "achieved_per_s": counts.get(202, 0) / elapsed, **_percentiles(latencies)}


def _percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {}
    ms = np.array(latencies) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}


def _cpu_seconds(pids: list[int]) -> float:
    """User+system CPU seconds of these processes so far (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _pids(cmd: list[str]) -> list[int]:
    try:
        return [int(p) for p in subprocess.run(cmd, capture_output=True, text=True).stdout.split()]
    except (OSError, ValueError):
        return []


class Server:
    """The aggregator under test (the one launcher, :class:`harness.server_process.AggregatorProcess`),
    an HTTP client for the benchmark's own admin calls, and the CPU counters of its processes."""

    def __init__(self, url: str, dsn: str, workers: int, pool: int, in_workers: bool = False) -> None:
        self.dsn = dsn  # psycopg DSN of the same database and schema, for the benchmark's own reads
        env = {"FEDPA_RATE_LIMIT_PER_MINUTE": "6000000", "FEDPA_RATE_LIMIT_BURST": "1000000",
               "FEDPA_DB_POOL_SIZE": str(pool), "FEDPA_DB_MAX_OVERFLOW": "0", "FEDPA_MAX_UPLOAD_BYTES": str(1 << 20)}
        self.process = AggregatorProcess(database_url=url, admin_token=ADMIN_TOKEN, workers=workers, env=env,
                                         args=["--aggregation-in-workers"] if in_workers else []).start()
        self.port = self.process.port
        self.http = httpx.Client(base_url=self.process.url, timeout=120)

    def cpu(self) -> tuple[float, float]:
        """(server processes, PostgreSQL processes) CPU seconds so far."""
        pid = self.process.proc.pid
        server = [pid, *_pids(["pgrep", "-P", str(pid)])]
        return _cpu_seconds(server), _cpu_seconds(_pids(["pgrep", "-u", "postgres"]))

    def stop(self) -> None:
        self.http.close()
        self.process.stop(timeout=30)


def publish(server: Server, model_id: str, config: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_bundle(Path(tmp), model_id)
        files = [("files", (n, (Path(tmp) / n).read_bytes())) for n in (MANIFEST_NAME, SHARED_STATE_FILE)]
        r = server.http.post("/v1/models", files=files, data={"config": json.dumps(config)}, headers=ADMIN)
        r.raise_for_status()


def devices_for(server: Server, model_id: str, n: int) -> list[Device]:
    tokens = [server.http.post("/v1/devices", json={"model_id": model_id}).json()["token"] for _ in range(n)]
    return [Device(i, model_id, tok, server.port) for i, tok in enumerate(tokens)]


def run_config(database: str, workers: int, args: argparse.Namespace) -> dict:
    """One configuration on a schema of its own: open loops first, then the saturating closed loops."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{database}?options=-csearch_path%3D{schema}"
    checkpoint(database)
    server = Server(dsn.replace("postgresql://", "postgresql+psycopg://"), dsn, workers, args.pool,
                    args.aggregation_in_workers)
    try:
        config = {"mode": "async", "buffer_size": args.buffer_size, "deadline_s": None, "max_staleness": 1_000_000,
                  "min_reporters": 1}
        load_model, agg_model, intake_model = f"load-w{workers}", f"agg-w{workers}", f"intake-w{workers}"
        publish(server, load_model, config)
        publish(server, intake_model, {**config, "buffer_size": 1_000_000})
        publish(server, agg_model, {**config, "buffer_size": 1_000_000})
        devices = devices_for(server, load_model, args.clients)
        intake_devices = devices_for(server, intake_model, args.clients)
        # Warm every device's cached token, the connections and the first aggregation: just registered,
        # all 200 would otherwise miss the token cache within the first 0.4 s of the measurement.
        warm = asyncio.run(closed_loop(server.port, devices, 1.0))
        # Open loops first: 500/s with its own aggregations, not the aftermath of a saturation test
        # (autovacuum and checkpoints of ~30,000 uploads, an aggregation backlog).
        cpu0 = server.cpu()
        opened = asyncio.run(open_loop(server.port, devices, args.rate, args.open_duration))
        n = max(1, opened["accepted"])
        opened["cpu_ms_per_upload"] = {name: 1000 * (b - a) / n for name, a, b in
                                       zip(("server", "postgres"), cpu0, server.cpu(), strict=True)}
        # Intake alone: the same load on a model whose buffer never fills (no aggregation running).
        intake_warm = asyncio.run(closed_loop(server.port, intake_devices, 0.5))
        intake_open = asyncio.run(open_loop(server.port, intake_devices, args.rate, args.open_duration))
        cpu0, t0 = (*server.cpu(), time.process_time()), time.perf_counter()
        closed = asyncio.run(closed_loop(server.port, devices, args.duration))
        cpu1 = (*server.cpu(), time.process_time())
        n = max(1, closed["accepted"])
        closed["cpu_ms_per_upload"] = {name: 1000 * (b - a) / n for name, a, b in
                                       zip(("server", "postgres", "load_generator"), cpu0, cpu1, strict=True)}
        closed["cpu_cores_used"] = sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) / (time.perf_counter() - t0)
        closed["loadavg_1min_after"] = os.getloadavg()[0]
        closed["aggregation_backlog"] = drain(server, load_model, args.buffer_size)
        intake = asyncio.run(closed_loop(server.port, intake_devices, args.intake_duration))
        # Aggregation of exactly 1,000 pending updates, timed end to end and inside the transaction.
        agg_devices = devices_for(server, agg_model, 50)
        asyncio.run(closed_loop_count(server.port, agg_devices, 1000))
        t0 = time.perf_counter()
        status = server.http.post(f"/v1/models/{agg_model}/aggregate", headers=ADMIN).json()
        aggregation = {"updates": status["last_aggregation"]["updates"],
                       "request_s": time.perf_counter() - t0,
                       "transaction_s": status["last_aggregation"]["duration_ms"] / 1000}
        # Zero lost updates: flush, then compare the clients' 202 count with the database.
        final = server.http.post(f"/v1/models/{load_model}/aggregate", headers=ADMIN).json()
        sent = warm["accepted"] + closed["accepted"] + opened["accepted"]
        lost = {"client_202": sent, "db_accepted": final["accepted_total"],
                "db_aggregated": final["aggregated_total"], "pending": final["pending_updates"],
                "ok": sent == final["accepted_total"] == final["aggregated_total"]}
        aggregations = server.http.get("/metrics").text.count("fedpa_aggregations_total{")
        intake_final = server.http.get(f"/v1/models/{intake_model}/status", headers=ADMIN).json()
        intake_sent = intake_warm["accepted"] + intake["accepted"] + intake_open["accepted"]
        lost["intake_ok"] = intake_sent == intake_final["accepted_total"] == intake_final["pending_updates"]
        lost["ok"] = lost["ok"] and lost["intake_ok"]
        return {"workers": workers, "closed_loop": closed, "intake_only_closed_loop": intake, "open_loop": opened,
                "intake_only_open_loop": intake_open,
                "aggregation_1000": aggregation,
                "zero_lost": lost, "aggregation_metric_series": aggregations}
    finally:
        server.stop()
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def drain(server: Server, model_id: str, buffer_size: int, timeout: float = 300.0) -> dict:
    """Wait until aggregation has caught up with a closed loop: fewer than ``buffer_size`` pending
    and every used payload dropped (``scrub_payloads`` runs after each aggregation).

    The niced aggregation process falls behind while the closed loop saturates the cores; the
    phases after it (intake alone, the timed aggregation) must not run during that catch-up.
    """
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        def backlog() -> tuple[int, int]:
            pending = server.http.get(f"/v1/models/{model_id}/status", headers=ADMIN).json()["pending_updates"]
            [(unscrubbed,)] = conn.execute(f"SELECT count(*) FROM updates WHERE {UNSCRUBBED}").fetchall()
            return pending, unscrubbed

        start = time.perf_counter()
        pending, unscrubbed = at_end = backlog()
        while pending >= buffer_size or unscrubbed:
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"aggregation did not catch up with {at_end} (pending, unscrubbed) "
                                   f"in {timeout:.0f} s")
            time.sleep(0.1)
            pending, unscrubbed = backlog()
    return {"pending_at_end": at_end[0], "unscrubbed_at_end": at_end[1], "caught_up_s": time.perf_counter() - start}


async def closed_loop_count(port: int, devices: list[Device], total: int) -> int:
    """Exactly ``total`` accepted uploads spread over the devices (for the aggregation timing)."""
    queue = list(range(total))

    async def run(device: Device) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ok = 0
        while queue:
            queue.pop()
            ok += await _roundtrip(reader, writer, device.request()) == 202
        writer.close()
        return ok

    accepted = sum(await asyncio.gather(*(run(d) for d in devices)))
    if accepted != total:
        raise RuntimeError(f"only {accepted} of {total} aggregation-phase uploads were accepted")
    return accepted


def postgres_floor(dsn: str, schema: str, rate: float, duration: float) -> dict:
    """PostgreSQL alone: one connection, one durable 18 KB insert per transaction at ``rate``/s.

    The latency floor the database and disk of this machine set for any server in front of them.
    """
    body = payload_bytes() * b"\x01"
    latencies = []
    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE TABLE {schema}.floor (id bigserial PRIMARY KEY, nonce text UNIQUE, tensors bytea)")
        conn.execute(f"ALTER TABLE {schema}.floor ALTER COLUMN tensors SET STORAGE EXTERNAL")
        conn.commit()
        start = time.perf_counter()
        for i in range(int(rate * duration)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.execute(f"INSERT INTO {schema}.floor (nonce, tensors) VALUES (%s, %s)", (f"n{i}", body))
            conn.commit()
            latencies.append(time.perf_counter() - scheduled)
    return {"offered_per_s": rate, "inserts": len(latencies), **_percentiles(latencies)}


def checkpoint(dsn: str) -> None:
    """Flush what earlier runs left dirty: each measurement starts from the same database state,
    not in the middle of a checkpoint of the previous configuration's writes."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def payload_bytes() -> int:
    prefix, suffix = body_template("load-w1", {"age": 0, "region": 0}, 0)
    return len(prefix) + NONCE_LEN + len(suffix)


def print_config(result: dict, args: argparse.Namespace) -> None:
    c, o, a, z = result["closed_loop"], result["open_loop"], result["aggregation_1000"], result["zero_lost"]
    ocpu, io = o["cpu_ms_per_upload"], result["intake_only_open_loop"]
    print(f"workers={result['workers']}: open loop {args.rate:.0f}/s offered: achieved {o['achieved_per_s']:.0f}/s, "
          f"p50 {o['p50_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms, max {o['max_ms']:.0f} ms; CPU per upload: "
          f"server {ocpu['server']:.2f} ms, PostgreSQL {ocpu['postgres']:.2f} ms")
    print(f"  open loop {args.rate:.0f}/s offered, intake only (no aggregation running): "
          f"p50 {io['p50_ms']:.1f} ms, p99 {io['p99_ms']:.1f} ms, max {io['max_ms']:.0f} ms")
    print(f"  closed loop {args.clients} clients: {c['uploads_per_s']:.0f} uploads/s "
          f"(p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms, status {c['status']})")
    cpu, b, i = c["cpu_ms_per_upload"], c["aggregation_backlog"], result["intake_only_closed_loop"]
    print(f"  CPU per upload: server {cpu['server']:.2f} ms, PostgreSQL {cpu['postgres']:.2f} ms, "
          f"load generator {cpu['load_generator']:.2f} ms; {c['cpu_cores_used']:.2f} cores used, "
          f"1-min load average {c['loadavg_1min_after']:.1f}")
    print(f"  aggregation backlog at the end: {b['pending_at_end']} updates pending, "
          f"{b['unscrubbed_at_end']} payloads to drop; caught up in {b['caught_up_s']:.1f} s")
    print(f"  intake only (no aggregation running): {i['uploads_per_s']:.0f} uploads/s "
          f"(p50 {i['p50_ms']:.1f} ms, p99 {i['p99_ms']:.1f} ms)")
    print(f"  aggregation of {a['updates']} updates: {a['transaction_s'] * 1000:.0f} ms in the transaction, "
          f"{a['request_s'] * 1000:.0f} ms end to end")
    print(f"  zero lost updates: {z}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=15.0, help="closed-loop seconds per configuration")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop offered uploads/s")
    parser.add_argument("--open-duration", type=float, default=10.0)
    parser.add_argument("--intake-duration", type=float, default=8.0,
                        help="closed-loop seconds on a model whose buffer never fills (no aggregation)")
    parser.add_argument("--pool", type=int, default=16, help="database connections per worker")
    parser.add_argument("--buffer-size", type=int, default=1000,
                        help="async buffer of the loaded model: an aggregation every N uploads")
    parser.add_argument("--aggregation-in-workers", action="store_true",
                        help="serve with --aggregation-in-workers (default: serve's own aggregation process)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "aggregator.json")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    load_at_start = os.getloadavg()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        checkpoint(args.database)
        floor = postgres_floor(args.database, schema, args.rate, args.open_duration)
    finally:
        with psycopg.connect(args.database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print(f"PostgreSQL alone, one durable 18 KB insert per transaction at {args.rate:.0f}/s: "
          f"p50 {floor['p50_ms']:.1f} ms, p99 {floor['p99_ms']:.1f} ms, max {floor['max_ms']:.0f} ms")
    results = []
    for workers in args.workers:
        result = run_config(args.database, workers, args)
        results.append(result)
        print_config(result, args)
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                          "loadavg_at_start": load_at_start, "loadavg_at_end": os.getloadavg()},
              "payload_bytes": payload_bytes(), "postgres_alone_open_loop": floor,
              "args": {k: str(v) for k, v in vars(args).items()}, "results": results,
              "median_closed_loop_uploads_per_s": statistics.median(r["closed_loop"]["uploads_per_s"] for r in results)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
