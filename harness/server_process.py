"""The one launcher of a real aggregator in a child process, for the demo, the tests and the benchmarks.

Why a subprocess and not an in-process app: the point of ``fedpa demo`` and of the end-to-end tests
is that devices talk HTTP to the same server a deployment runs (uvicorn, its own event loop, its
own database connections), and that the server can be killed and restarted under them.

Usage::

    with AggregatorProcess(database_url="sqlite:///runs/agg.db") as server:
        client = AggregatorClient(server.url, token=server.admin_token)
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import httpx

from fedpa.errors import ConfigError, SyncError

__all__ = ["AggregatorProcess", "free_port", "temporary_postgres_database"]

log = logging.getLogger(__name__)

_SERVE = "from aggregator.cli import app; app()"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AggregatorProcess:
    """``fedpa-aggregator serve`` as a child process in a process group of its own (its uvicorn workers
    and aggregation process with it); ``stop()``/``start()`` simulate an outage, ``kill()`` a crash.

    ``workers`` and ``args`` (more ``serve`` flags) are passed on; ``env`` adds to the environment.
    Without a ``log_file`` the server writes to this process's own stdout/stderr.
    """

    def __init__(self, *, database_url: str, port: int | None = None, admin_token: str | None = None,
                 workers: int = 1, args: Sequence[str] = (), log_file: str | Path | None = None,
                 env: dict[str, str] | None = None, startup_timeout: float = 60.0) -> None:
        self.database_url = database_url
        self.port = port or free_port()
        self.admin_token = admin_token or secrets.token_urlsafe(32)
        self.workers = workers
        self.args = list(args)
        self.log_file = Path(log_file) if log_file else None
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AggregatorProcess:
        """Start the server and wait until ``/healthz`` answers (or raise SyncError with its log)."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        env = {**os.environ, "FEDPA_ADMIN_TOKEN": self.admin_token, "FEDPA_DATABASE_URL": self.database_url,
               **self.extra_env}
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_file, "ab")
        cmd = [sys.executable, "-c", _SERVE, "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", str(self.workers), "--log-level", "warning", *self.args]
        self._proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT if self._log else None,
                                      start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise SyncError(f"aggregator exited with {self._proc.returncode} at start; see {self._output}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        log.info("aggregator up at %s (%s)", self.url, self.database_url.split("@")[-1])
                        return self
                time.sleep(0.1)
        self.stop()
        raise SyncError(f"aggregator did not answer /healthz within {self.startup_timeout}s; see {self._output}")

    @property
    def _output(self) -> str:
        return str(self.log_file) if self.log_file else "its output above"

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM to the server's process group (uvicorn shuts down gracefully), then SIGKILL if it
        hangs; only our own child and the processes it started."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the whole process group (the server, its workers, its aggregation process): a crash."""
        if self._proc is not None and self._proc.poll() is None:
            _signal_group(self._proc, signal.SIGKILL)
            self._proc.wait(10)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The ``serve`` process itself (tests signal it alone; benchmarks read its CPU time)."""
        if self._proc is None:
            raise SyncError("the aggregator is not started")
        return self._proc

    def processes(self) -> dict[int, str]:
        """pid → command line of every live process in the server's process group (Linux ``/proc``)."""
        out = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z" and int(fields[2]) == self.proc.pid:  # state, ppid, pgrp
                    out[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, IndexError):
                continue  # the process ended meanwhile
        return out

    def __enter__(self) -> AggregatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group ended meanwhile
        os.killpg(proc.pid, sig)


@contextlib.contextmanager
def temporary_postgres_database(server_url: str, *, prefix: str = "fedpa_edge") -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the server of ``server_url``; dropped afterwards.

    Why a whole database: the aggregator migrates its own tables; a private database isolates a
    test or demo run from every other user of the server without touching their schemas.
    """
    try:
        import psycopg
        from sqlalchemy.engine import make_url
    except ImportError as exc:  # the aggregator extra is not installed
        raise ConfigError("--postgres needs the aggregator extra (psycopg, sqlalchemy)") from exc
    url = make_url(server_url)
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
