"""A fleet of simulated devices (one per private user of a dataset) against a real aggregator.

Each device is a full :class:`edge.device.Device` with its own store folder, token and bundle
copy, talking HTTP to the server; only the loaded programs are shared between devices (read-only),
so a few hundred devices fit in one process. Rounds are driven from here: every device trains and
uploads, then the round closes (the server closes it by itself when ``round_size`` updates arrived;
with an admin token the fleet closes it explicitly), then every device re-downloads and scores
its validation and test rows. Test metrics are reported at the round with the best validation AUC
(docs/design.md §3).

Usage: ``report = run_fleet(ds, Path("runs/fleet"), FleetConfig(server=url, model_id="demo"))``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from edge.client import AggregatorClient, RetryPolicy
from edge.device import Device, RoundResult
from edge.items import ItemTableClient
from edge.programs import LocalPrograms
from edge.signals import DeviceSignals
from edge.store import DeviceState, LocalStore
from fedpa.errors import BundleError, FedPAError, SyncError
from fedpa.manifest import read_manifest
from fedpa.metrics import evaluate
from fedpa.privacy import DevicePolicy, PrivacyConfig
from fedpa.schedule import DIVERGED_LOSS, LocalTraining  # DIVERGED_LOSS: re-exported for the CLI
from fedpa.signing import PublicKey
from fedpa.wire import MANIFEST_NAME

if TYPE_CHECKING:
    from fedpa.data import Dataset, Interactions

__all__ = ["DIVERGED_LOSS", "FleetConfig", "FleetReport", "ProgramCache", "build_devices", "existing_stores",
           "run_fleet"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class FleetConfig:
    server: str
    model_id: str
    rounds: int = 3
    workers: int = 4  # threads; each runs one device's round at a time
    max_devices: int | None = None  # None: every private user of the dataset
    privacy: PrivacyConfig | None = None  # None: LDP off
    policy: DevicePolicy | None = None  # every device's own floor and budget (None: privacy's budget)
    trust_key: PublicKey | None = None  # the publisher key devices pin (None: unsigned bundles accepted)
    training: LocalTraining = field(default_factory=LocalTraining)
    seed: int = 0
    admin_token: str | None = None  # lets the fleet close rounds itself; else it waits for the server
    round_timeout_s: float = 300.0
    backend: str = "pte"
    evaluate: bool = True
    # Wipe device folders first (a new experiment) instead of resuming them. Resumed devices keep their
    # adapters, counters and spent privacy budget: a device past its ε budget refuses to upload.
    fresh: bool = True


@dataclass
class FleetReport:
    devices: int
    rounds: list[dict[str, Any]] = field(default_factory=list)  # per round: statuses, metrics, versions
    initial: dict[str, dict[str, float]] = field(default_factory=dict)  # val/test metrics before round 1
    best_round: int = 0
    best: dict[str, dict[str, float]] = field(default_factory=dict)  # val/test at the best val-AUC round
    bytes_up: int = 0
    bytes_down: int = 0
    epsilon_max: float = 0.0
    failed_rounds: int = 0
    diverged_rounds: list[int] = field(default_factory=list)  # rounds where some device's local run diverged
    discarded_runs: int = 0  # device-rounds whose diverged local run the device discarded (zero update sent)
    budget_refusals: int = 0  # device-rounds not run because the device's ε budget was spent
    resumed: int = 0  # devices whose store was kept from an earlier run
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Member:
    device: Device
    user: int
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    item_ids: np.ndarray  # raw ids of the items in its log and its evaluation rows (for their item vectors)


def _rows(split: Interactions, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mask = split.user == user
    return split.x[mask], split.y[mask], split.ts[mask]


class ProgramCache:
    """Loaded programs shared by every device whose bundle has the same manifest (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_digest: dict[str, LocalPrograms] = {}

    def __call__(self, bundle_dir: Path) -> LocalPrograms:
        digest = hashlib.sha256((bundle_dir / MANIFEST_NAME).read_bytes()).hexdigest()
        with self._lock:
            if digest not in self._by_digest:
                self._by_digest[digest] = LocalPrograms.open(bundle_dir)
            else:
                read_manifest(bundle_dir)  # still verify this device's own copy of every file
            return self._by_digest[digest]


def existing_stores(root: Path) -> tuple[int, float]:
    """How many device stores ``root`` already holds, and the most ε any of them has spent."""
    states = [DeviceState.from_json(p.read_text()) for p in sorted(Path(root).glob("device-*/state.json"))]
    return len(states), max((s.epsilon_spent for s in states), default=0.0)


def build_devices(ds: Dataset, root: Path, config: FleetConfig, *, http: httpx.Client,
                  programs: ProgramCache | None = None) -> list[_Member]:
    """One store per private user (log = its train split), not yet registered."""
    users = np.asarray(ds.private_users, np.int64)
    if config.max_devices is not None:
        users = users[: config.max_devices]
    attributes = list(ds.schema.group_attributes)
    members = []
    for user in users:
        folder = root / f"device-{int(user)}"
        if config.fresh:
            shutil.rmtree(folder, ignore_errors=True)
        store = LocalStore.open(folder)
        if store.load_log() is None:
            store.save_log(*_rows(ds.private_train, int(user)))
        DeviceSignals.open(store, ds.schema)  # the history of a full-features bundle, from the log (kept in the store)
        client = AggregatorClient(config.server, http=http, seed=config.seed * 1_000_003 + int(user),
                                  retry=RetryPolicy())
        device = Device(store, client, model_id=config.model_id, privacy=config.privacy, policy=config.policy,
                        trust_key=config.trust_key,
                        training=replace(config.training, seed=config.seed, client=int(user)),
                        programs=programs or ProgramCache(), noise_seed=config.seed,
                        backend=config.backend)
        groups = {a: int(v) for a, v in zip(attributes, ds.user_groups[user], strict=True)}
        device.store.state.groups = groups
        device.store.state.user = str(ds.user_ids[user])
        val, test = _rows(ds.private_val, int(user)), _rows(ds.private_test, int(user))
        items = np.unique(np.concatenate([split.item[split.user == user] for split in
                                          (ds.private_train, ds.private_val, ds.private_test)]))
        members.append(_Member(device, int(user), val[:2], test[:2], np.asarray(ds.item_ids)[items]))
    return members


def _evaluate(members: list[_Member], pool: ThreadPoolExecutor) -> dict[str, dict[str, float]]:
    def one(m: _Member) -> tuple[np.ndarray, ...]:
        m.device.sync_state()
        xs = np.concatenate([m.val[0], m.test[0]])
        logits = m.device.score(xs) if len(xs) else np.zeros(0, np.float32)
        n = len(m.val[0])
        return logits[:n], logits[n:]

    outs = list(pool.map(one, members))
    result = {}
    for k, name in enumerate(("val", "test")):
        user = np.concatenate([np.full(len(getattr(m, name)[1]), m.user) for m in members])
        y = np.concatenate([getattr(m, name)[1] for m in members])
        result[name] = evaluate(user, y, np.concatenate([o[k] for o in outs]))
    return result


def _wait_for_version(admin: AggregatorClient, model_id: str, before: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = admin.status(model_id)
        if status["state_version"] > before or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def run_fleet(ds: Dataset, root: str | Path, config: FleetConfig, *, http: httpx.Client | None = None,
              progress: Progress | None = None) -> FleetReport:
    """Set up every device, run ``config.rounds`` rounds over HTTP, evaluate; never raises per device."""
    start = time.perf_counter()
    root = Path(root)
    own_http = http is None
    http = http or httpx.Client(timeout=60.0, limits=httpx.Limits(max_connections=max(8, 2 * config.workers)))
    tick = progress or (lambda stage, done, total: None)
    resumed = 0 if config.fresh else existing_stores(root)[0]
    members = build_devices(ds, root, config, http=http, programs=ProgramCache())
    report = FleetReport(devices=len(members), resumed=min(resumed, len(members)))

    def setup(m: _Member) -> None:
        m.device.setup()
        if m.device.manifest.item_vectors is not None:  # the log's item vectors come from the item table
            items = ItemTableClient(m.device.client, config.model_id, model_version=m.device.manifest.model_version)
            DeviceSignals(m.device.store, ds.schema, items=items).learn_vectors(m.item_ids)

    observer = AggregatorClient(config.server, http=http, token=config.admin_token)
    try:
        with ThreadPoolExecutor(max_workers=config.workers) as pool:
            for i, _ in enumerate(pool.map(setup, members)):
                tick("setup", i + 1, len(members))
            _check_schema(ds, members[0].device)
            if not config.admin_token:
                observer.token = members[0].device.state.token
            if config.evaluate:
                report.initial = _evaluate(members, pool)
            best_auc = -np.inf
            for r in range(1, config.rounds + 1):
                before = observer.status(config.model_id)["state_version"]
                results: list[RoundResult | str] = []
                for m, res in zip(members, pool.map(_safe_round, members), strict=True):
                    results.append(res)
                    tick(f"round {r}", len(results), len(members))
                    if isinstance(res, str) and res.startswith("PrivacyBudgetError"):
                        report.budget_refusals += 1
                    elif isinstance(res, str):
                        report.errors.append(f"round {r} device {m.user}: {res}")
                status = observer.status(config.model_id)
                if status["state_version"] == before and config.admin_token and status["pending_updates"]:
                    status = observer.aggregate(config.model_id)
                uploaded = any(isinstance(x, RoundResult) and x.status == "accepted" for x in results)
                if uploaded:  # nothing to wait for when every device refused (budget spent) or failed
                    status = _wait_for_version(observer, config.model_id, before, config.round_timeout_s)
                statuses = [r_.status if isinstance(r_, RoundResult) else "error" for r_ in results]
                ran = [x for x in results if isinstance(x, RoundResult) and x.status != "skipped"]
                discarded = [x for x in ran if x.discarded]
                losses = [x.loss for x in ran if not x.discarded and np.isfinite(x.loss)]  # the runs that were used
                row: dict[str, Any] = {
                    "round": r, "state_version": status["state_version"],
                    "closed": status["state_version"] > before,
                    "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
                    "loss": float(np.mean(losses)) if losses else float("nan"),  # nan: no device trained
                    "skipped_steps": sum(x.skipped_steps for x in results if isinstance(x, RoundResult)),
                    "discarded_runs": len(discarded),
                    "max_loss": max((x.loss for x in ran), default=float("nan")),  # diverged runs included
                }
                if not row["closed"] or row["statuses"].get("accepted", 0) == 0:
                    report.failed_rounds += 1
                row["diverged"] = bool(discarded)  # each device judged its own run (fedpa.schedule.diverged_run)
                report.discarded_runs += len(discarded)
                if row["diverged"]:
                    report.diverged_rounds.append(r)
                    log.warning("round %d: %d local run(s) diverged and were discarded (max loss %s, %d steps "
                                "skipped)", r, len(discarded), row["max_loss"], row["skipped_steps"])
                if config.evaluate:
                    row.update(_evaluate(members, pool))
                    if row["val"]["auc"] > best_auc:
                        best_auc, report.best_round = row["val"]["auc"], r
                        report.best = {"val": row["val"], "test": row["test"]}
                report.rounds.append(row)
                log.info("round %d: %s", r, row)
    finally:
        observer.close()
        if own_http:
            http.close()
    report.bytes_up = sum(m.device.state.bytes_up for m in members)
    report.bytes_down = sum(m.device.state.bytes_down for m in members)
    report.epsilon_max = max((m.device.state.epsilon_spent for m in members), default=0.0)
    report.seconds = time.perf_counter() - start
    return report


def _check_schema(ds: Dataset, device: Device) -> None:
    """Refuse a dataset encoded differently from the bundle: its codes would hit the wrong embeddings."""
    from fedpa.data import FeatureSchema
    from fedpa.runtime import schema_differences

    diffs = schema_differences(FeatureSchema.from_dict(device.manifest.feature_schema), ds.schema)
    if diffs:
        raise BundleError("the dataset's feature schema differs from the bundle's: " + "; ".join(diffs[:3]))


def _safe_round(m: _Member) -> RoundResult | str:
    """A device's round; its failure (network, budget, refusal) is reported, not raised."""
    try:
        return m.device.run_round()
    except (FedPAError, SyncError) as exc:
        return f"{type(exc).__name__}: {exc}"
