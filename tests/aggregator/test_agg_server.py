"""End to end through a real uvicorn server in a subprocess: flow, concurrency, crash safety."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from agg_helpers import (
    ADMIN,
    MODEL_ID,
    aggregator_process,
    make_update,
    publish,
    reference_step,
    register,
    wait_for,
    write_bundle,
)
from sqlalchemy import create_engine, select

from aggregator.models import Aggregation, Update
from fedpa.payload import decode_tensors
from harness.server_process import AggregatorProcess

URL = f"/v1/models/{MODEL_ID}/updates"


@pytest.fixture
def server_factory():
    servers: list[AggregatorProcess] = []

    def start(database_url: str, **kwargs) -> AggregatorProcess:
        started = aggregator_process(database_url, **kwargs).start()
        servers.append(started)
        return started

    yield start
    for started in servers:
        started.stop()


def _status(http: httpx.Client) -> dict:
    return http.get(f"/v1/models/{MODEL_ID}/status", headers=ADMIN).json()


def _bank(http: httpx.Client) -> dict[str, np.ndarray]:
    return decode_tensors(http.get(f"/v1/models/{MODEL_ID}/state", headers=ADMIN).content)


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])  # field 19: nice


def _assert_bank(actual, expected):
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("aggregation_process", [False, True], ids=["in-worker", "aggregation-process"])
def test_full_flow_on_sqlite(server_factory, sqlite_url, tmp_path, aggregation_process):
    bank = write_bundle(tmp_path / "b")
    server = server_factory(sqlite_url, args=[] if aggregation_process else ["--aggregation-in-workers"])
    loops = [pid for pid, cmd in server.processes().items() if "aggregate-loop" in cmd]
    assert len(loops) == (1 if aggregation_process else 0), server.processes()
    if aggregation_process:  # background work: it yields the cores to the serving workers
        assert _nice(loops[0]) == min(19, _nice(server.proc.pid) + 10)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert publish(http, tmp_path / "b", {"round_size": 3, "min_reporters": 2}).status_code == 201
        sent = []
        for i in range(3):
            device = register(http)
            groups = {"age": i % 2, "region": 0}
            state = http.get(f"/v1/models/{MODEL_ID}/state", params={"groups": f"age:{i % 2},region:0"},
                             headers=device)
            assert state.status_code == 200 and state.headers["x-fedpa-state-version"] == "0"
            body, deltas = make_update(groups, seed=i, example_count=i + 1)
            r = http.post(URL, content=body, headers=device)
            assert r.status_code == 202, r.text
            sent.append((deltas, float(i + 1)))

        status = wait_for(lambda: (s := _status(http))["state_version"] == 1 and s)
        # The aggregation's metrics are recorded just after its transaction commits.
        metrics = wait_for(lambda: "fedpa_aggregations_total{" in (m := http.get("/metrics").text) and m)

        assert status["aggregated_total"] == 3 and status["last_aggregation"]["skipped_groups"] == {"age=1": 1}
        _assert_bank(_bank(http), reference_step(bank, sent, min_reporters=2))
        assert f'fedpa_uploads_accepted_total{{model_id="{MODEL_ID}"}} 3.0' in metrics
        assert "fedpa_aggregation_duration_seconds_bucket" in metrics
        assert re.search(r'fedpa_aggregations_total\{model_id="tiny",trigger="\w+"\} 1\.0', metrics), metrics

        if aggregation_process:  # the workers only serve: without the loop a full round stays open
            os.kill(loops[0], signal.SIGKILL)
            for i in range(3):
                body, _ = make_update({"age": 0, "region": 0}, seed=10 + i, base_version=1)
                assert http.post(URL, content=body, headers=register(http)).status_code == 202
            time.sleep(0.5)  # ten scheduler ticks of a worker, were one running
            assert _status(http)["state_version"] == 1 and _status(http)["pending_updates"] == 3


def test_killed_server_leaves_no_aggregation_process_behind(server_factory, sqlite_url):
    server = server_factory(sqlite_url)
    [loop] = [pid for pid, cmd in server.processes().items() if "aggregate-loop" in cmd]

    os.kill(server.proc.pid, signal.SIGKILL)  # the serve process only: its finally never runs
    server.proc.wait(10)

    assert wait_for(lambda: not Path(f"/proc/{loop}").exists()
                    or Path(f"/proc/{loop}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", timeout=10)


@pytest.mark.postgres
def test_parallel_uploads_two_workers_postgres_sync_round(server_factory, pg_url, tmp_path):
    n = 48
    bank = write_bundle(tmp_path / "b")
    server = server_factory(pg_url, workers=2)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        publish(http, tmp_path / "b", {"round_size": n, "min_reporters": 3})
        devices = [register(http) for _ in range(n)]
    uploads = [make_update({"age": i % 3, "region": i % 2}, seed=100 + i, example_count=1 + i % 7) for i in range(n)]

    def send(i: int) -> list[int]:
        body = uploads[i][0]
        with httpx.Client(base_url=server.url, timeout=30) as http:  # same nonce twice: a racing replay
            return [http.post(URL, content=body, headers=devices[i]).status_code for _ in range(2)]

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(send, range(n)))

    with httpx.Client(base_url=server.url, timeout=30) as http:
        status = wait_for(lambda: (s := _status(http))["state_version"] == 1 and s)
        state = _bank(http)
        metrics = http.get("/metrics").text  # summed over both workers (multiprocess mode)
    assert all(sorted(c) == [202, 409] for c in codes), codes
    assert f'fedpa_uploads_accepted_total{{model_id="{MODEL_ID}"}} {n}.0' in metrics
    assert f'fedpa_uploads_rejected_total{{reason="replayed_nonce"}} {n}.0' in metrics
    assert (status["accepted_total"], status["aggregated_total"], status["pending_updates"]) == (n, n, 0)
    _assert_bank(state, reference_step(bank, [(d, float(1 + i % 7)) for i, (_, d) in enumerate(uploads)],
                                       min_reporters=3))
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(select(Aggregation.updates)).scalars().all() == [n]  # exactly one aggregation
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("hosts", [1, 2], ids=["one-serve-two-workers", "two-serves-two-ports"])
def test_async_every_update_aggregated_exactly_once(server_factory, pg_url, tmp_path, hosts):
    """Buffers flush while uploads race in; replaying the audit trail reproduces the final bank.

    ``two-serves-two-ports``: two independent ``serve`` processes (as on two hosts behind a load
    balancer), each with its own aggregation process, over ONE PostgreSQL database; uploads
    alternate between them. Every accepted update must be aggregated exactly once.
    """
    n = 40
    bank = write_bundle(tmp_path / "b")
    servers = [server_factory(pg_url, workers=2 if hosts == 1 else 1) for _ in range(hosts)]
    server = servers[0]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        # the reference below is the plain FedBuff mean: robust defaults off, and one device per upload
        # (a device's updates in one buffer are merged into one vote, which the reference does not model)
        publish(http, tmp_path / "b", {"mode": "async", "buffer_size": 6, "max_staleness": 100,
                                       "staleness_exponent": 0.5, "min_reporters": 1, "norm_bound": None,
                                       "weight_cap_median": None, "max_step": None})
        devices = [register(http) for _ in range(n)]
    uploads = {}

    def send(i: int) -> int:
        with httpx.Client(base_url=servers[i % hosts].url, timeout=30) as http:
            base = int(http.get(f"/v1/models/{MODEL_ID}/status", headers=devices[i]).json()["state_version"])
            body, deltas = make_update({"age": i % 3, "region": i % 2}, seed=i, base_version=base,
                                       example_count=1 + i % 5, nonce=f"nonce-{i:012d}")
            uploads[f"nonce-{i:012d}"] = deltas
            return http.post(URL, content=body, headers=devices[i]).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(send, range(n)))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        http.post(f"/v1/models/{MODEL_ID}/aggregate", headers=ADMIN)  # flush the tail
        status = _status(http)
        state = _bank(http)

    assert codes == [202] * n
    assert (status["accepted_total"], status["aggregated_total"]) == (n, n)
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(select(Update.nonce, Update.base_version, Update.example_count, Update.aggregated_into)
                            .order_by(Update.id)).all()
        sizes = conn.execute(select(Aggregation.to_state_version, Aggregation.updates)
                             .order_by(Aggregation.id)).all()
    engine.dispose()
    assert sum(size for _, size in sizes) == n and [v for v, _ in sizes] == list(range(1, len(sizes) + 1))
    assert all(r.aggregated_into is not None for r in rows) and len({r.nonce for r in rows}) == n
    expected = bank
    for version in range(1, status["state_version"] + 1):
        batch = [r for r in rows if r.aggregated_into == version]
        expected = reference_step(expected, [(uploads[r.nonce], float(r.example_count)) for r in batch],
                                  staleness=[version - 1 - r.base_version for r in batch], exponent=0.5)
    _assert_bank(state, expected)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_update_survives_a_crash_and_is_aggregated_once(server_factory, request, tmp_path, backend):
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    bank = write_bundle(tmp_path / "b")
    server = server_factory(url)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        publish(http, tmp_path / "b", {"round_size": 2, "min_reporters": 1})
        device = register(http)
        first, d1 = make_update({"age": 0, "region": 0}, seed=1)
        assert http.post(URL, content=first, headers=device).status_code == 202
    server.kill()  # SIGKILL right after the 202: no shutdown hooks run

    restarted = server_factory(url)
    with httpx.Client(base_url=restarted.url, timeout=30) as http:
        before = _status(http)
        replay = http.post(URL, content=first, headers=device)
        second, d2 = make_update({"age": 1, "region": 0}, seed=2)
        assert http.post(URL, content=second, headers=register(http)).status_code == 202  # round_size counts devices
        status = wait_for(lambda: (s := _status(http))["state_version"] == 1 and s)
        state = _bank(http)

    assert before["pending_updates"] == 1 and before["accepted_total"] == 1
    assert replay.status_code == 409
    assert (status["aggregated_total"], status["last_aggregation"]["updates"]) == (2, 2)
    _assert_bank(state, reference_step(bank, [(d1, 10.0), (d2, 10.0)]))
