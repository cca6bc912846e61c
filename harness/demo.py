"""``fedpa demo``: the whole system end to end on one machine, in a few minutes, with no options.

Stages (each timed): data (synthetic by default) → pre-train the teacher and distil the student
on open users → export a verified bundle (ExecuTorch + ONNX) → start the aggregator (SQLite on a
free loopback port, or a fresh database on ``--postgres``) → publish → a fleet of simulated
devices, one per private user, trains with the bundle's training program and uploads LDP-noised
deltas over HTTP for a few rounds → report (GAUC/AUC before and after adaptation, bytes, ε, wall
time per stage) and a PNG plot → everything shut down.

Local training is the device's (``fedpa.schedule.LocalTraining``: 5 epochs, batch 32, lr 1.0).
The LDP clip norm C = 0.1 was chosen on the synthetic data's **validation** split
(``benchmarks/bench_demo_lr.py``, docs/RESULTS.md §9): every upload carries noise σ·C per
coordinate, which the server's group means accumulate round after round; at C = 0.5 it pulled
validation GAUC from 0.701 to 0.60–0.66 by round 5 (and a device's lr-1.0 run occasionally
diverged on that state), at C = 0.1 it stays at 0.70. At ε = 8 (δ = 1e-5) and 201 devices the
5 rounds add little over the distilled student (+0.001–0.004 test GAUC): the report says so.

Usage: ``report = run_demo(DemoConfig(out=Path("runs/demo")))`` or ``fedpa demo``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from fedpa.cli_common import FedPACommand
from fedpa.schedule import LocalTraining

__all__ = ["DemoConfig", "DemoReport", "demo", "demo_app", "run_demo"]

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("runs/demo")
    dataset: str = "synthetic"
    data_dir: Path | None = None
    max_users: int | None = None  # subsample the dataset's users (quick runs, tests)
    train_epochs: int = 30  # upper bound for teacher and student (early stopping on open validation)
    seed: int = 0
    rounds: int = 5
    devices: int | None = None  # None: every private user
    workers: int = 4
    ldp: bool = True
    epsilon: float = 8.0  # per-user budget over all rounds; sets the noise multiplier
    delta: float = 1e-5
    clip_norm: float = 0.1  # chosen on validation (benchmarks/bench_demo_lr.py): the noise σ·C accumulates
    lr: float = LocalTraining.lr  # the device's local-training defaults (fedpa.schedule)
    local_epochs: int = LocalTraining.epochs
    batch_size: int = LocalTraining.batch_size
    postgres: str | None = None  # a server URL; the demo creates (and drops) its own database there
    model_id: str = "fedpa-demo"
    features: str = "full"  # issue-14 input kinds: full (item statistics, item code, history) or base
    without: str = ""  # kinds switched off from full, comma-separated


@dataclass
class DemoReport:
    config: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    fm_only: dict[str, float] = field(default_factory=dict)  # the distilled student, eager, private test
    before: dict[str, float] = field(default_factory=dict)  # round 0 through the bundle (.pte)
    after: dict[str, float] = field(default_factory=dict)  # test at the best validation round
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # "before"/"after": what the pick saw
    best_round: int = 0
    devices: int = 0
    failed_rounds: int = 0
    diverged_rounds: list[int] = field(default_factory=list)  # rounds where some device's local run diverged
    discarded_runs: int = 0  # device-rounds whose diverged run the device discarded (fedpa.schedule.diverged_run)
    bytes_up: int = 0
    bytes_down: int = 0
    upload_bytes_per_device_round: float = 0.0
    epsilon: float | None = None
    noise_multiplier: float | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    plot: str | None = None
    database: str = "sqlite"
    input_kinds: list[str] = field(default_factory=list)
    item_table: dict[str, Any] = field(default_factory=dict)  # the published table: version, items, bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _stage(name: str, seconds: dict[str, float], say: Say) -> Iterator[None]:
    say(f"{name}…")
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 2)
    say(f"{name}: {seconds[name]:.1f} s")


@contextlib.contextmanager
def _database(config: DemoConfig) -> Iterator[str]:
    if config.postgres:
        from harness.server_process import temporary_postgres_database

        with temporary_postgres_database(config.postgres, prefix="fedpa_demo") as url:
            yield url
    else:
        db = (config.out / "aggregator.db").resolve()
        for suffix in ("", "-wal", "-shm"):  # a fresh database per run: model versions restart at 1
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        yield f"sqlite:///{db}"


def run_demo(config: DemoConfig, *, say: Say | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> DemoReport:
    """Run every stage; the aggregator is stopped (and a PostgreSQL database dropped) whatever happens."""
    import torch

    from edge.client import AggregatorClient
    from edge.items import publish_item_table
    from export.bundle import build_bundle
    from export.items import student_item_vectors, write_item_table
    from fedpa.data import load_dataset
    from fedpa.manifest import PrivacySettings
    from fedpa.privacy import PrivacyConfig, noise_multiplier_for
    from fedpa.runtime.items import item_table_features
    from fedpa.train import TrainConfig, adapter_config_for, distill, pretrain
    from harness.fleet import FleetConfig, run_fleet
    from harness.plots import plot_rounds
    from harness.server_process import AggregatorProcess

    say = say or (lambda msg: log.info("%s", msg))
    torch.manual_seed(config.seed)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    report = DemoReport(config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()})
    secs = report.seconds

    with _stage("data", secs, say):
        ds = load_dataset(config.dataset, config.data_dir, seed=config.seed, max_users=config.max_users,
                          features=config.features, without=config.without)  # "" switches nothing off
    report.input_kinds = list(ds.report.get("input_kinds", []))
    train = TrainConfig(epochs=config.train_epochs)
    with _stage("pre-train teacher", secs, say):
        teacher = pretrain(ds, train=train, seed=config.seed)
    with _stage("distil student", secs, say):
        student = distill(ds, teacher.model, train=train, seed=config.seed)
    report.fm_only = dict(student.metrics["private_test"])

    privacy = None
    if config.ldp:  # σ is the smallest whose `rounds` uploads spend at most ε: the budget fits them exactly
        sigma = noise_multiplier_for(config.epsilon, config.rounds, delta=config.delta)
        privacy = PrivacyConfig(mechanism="gaussian", clip_norm=config.clip_norm, noise_multiplier=sigma,
                                delta=config.delta, epsilon_budget=config.epsilon)
        report.noise_multiplier = sigma
    settings = PrivacySettings.requesting(privacy, rounds=config.rounds)  # the one LDP config, as the bundle asks it
    with _stage("export bundle", secs, say):
        built = build_bundle(student.model, ds.schema, out / "bundle", model_id=config.model_id,
                             adapter=adapter_config_for(ds.schema, gate_mode="residual"), privacy=settings,
                             metrics={"teacher": _brief(teacher.metrics), "student": _brief(student.metrics)},
                             seed=config.seed, overwrite=True)

    with _database(config) as database_url:
        report.database = "postgresql" if config.postgres else "sqlite"
        server = AggregatorProcess(database_url=database_url, log_file=out / "aggregator.log")
        try:
            with _stage("start aggregator", secs, say):
                server.start()
            n_devices = len(ds.private_users) if config.devices is None else min(config.devices,
                                                                                   len(ds.private_users))
            with _stage("publish", secs, say), AggregatorClient(server.url, token=server.admin_token) as admin:
                admin.publish(built.path, config={"round_size": n_devices, "min_reporters": 3,
                                                  "deadline_s": 600.0, "enforce_privacy": privacy is not None})
                if item_table_features(ds.schema):  # the item side is served per candidate, not in the bundle
                    table = write_item_table(built.path, ds, out / "items.safetensors", table_version=1,
                                             overwrite=True,
                                             code_vectors=student_item_vectors(student.model, built.path))
                    served = publish_item_table(admin, config.model_id, table.path)
                    report.item_table = {"table_version": served["table_version"], "items": served["n_items"],
                                         "file_bytes": table.nbytes,
                                         "row_bytes": 4 + len(table.table.meta.columns) + 1
                                         + (table.table.meta.vector_dim + 4 if table.table.meta.vector_dim else 0)}
            fleet = FleetConfig(server=server.url, model_id=config.model_id, rounds=config.rounds,
                                workers=config.workers, max_devices=n_devices, privacy=privacy,
                                training=LocalTraining(epochs=config.local_epochs, batch_size=config.batch_size,
                                                       lr=config.lr),
                                seed=config.seed, admin_token=server.admin_token)
            with _stage(f"fleet ({n_devices} devices × {config.rounds} rounds over HTTP)", secs, say):
                result = run_fleet(ds, out / "devices", fleet, progress=progress)
        finally:
            with _stage("shut down", secs, say):
                server.stop()

    report.devices, report.failed_rounds = result.devices, result.failed_rounds
    report.diverged_rounds, report.discarded_runs = result.diverged_rounds, result.discarded_runs
    report.before, report.after = result.initial.get("test", {}), result.best.get("test", {})
    report.validation = {"before": result.initial.get("val", {}), "after": result.best.get("val", {})}
    report.best_round, report.rounds = result.best_round, result.rounds
    report.bytes_up, report.bytes_down = result.bytes_up, result.bytes_down
    report.upload_bytes_per_device_round = result.bytes_up / max(1, result.devices * config.rounds)
    report.epsilon = result.epsilon_max if privacy else None
    report.plot = str(plot_rounds(result, out / "rounds.png", fm_only=report.fm_only,
                                  title=f"fedpa demo — {config.dataset}, {result.devices} devices, "
                                        + (f"LDP ε≤{config.epsilon:g}" if privacy else "no LDP")))
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=float))
    return report


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    """Training metrics without the per-epoch history (kept small in the manifest)."""
    return {k: v for k, v in metrics.items() if k != "history"}


# ----------------------------------------------------------------------------- CLI


def demo(
    dataset: Annotated[str, typer.Option(help="synthetic | kuaisar-r | kuairand | csv")] = "synthetic",
    data_dir: Annotated[Path | None, typer.Option(help="Dataset directory (not needed for synthetic).")] = None,
    max_users: Annotated[int | None, typer.Option(min=2, help="Subsample the dataset's users (quick runs).")] = None,
    train_epochs: Annotated[int, typer.Option(min=1, help="Epoch cap for teacher and student.")] = 30,
    out: Annotated[Path, typer.Option(help="Where the bundle, device stores, report and plot go.")] = Path(
        "runs/demo"),
    rounds: Annotated[int, typer.Option(min=1, help="Federated rounds over HTTP.")] = 5,
    devices: Annotated[int | None, typer.Option(min=1, help="Devices (default: every private user).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Device threads.")] = 4,
    epsilon: Annotated[float, typer.Option(help="Per-user LDP budget ε over all rounds (δ = 1e-5).")] = 8.0,
    clip_norm: Annotated[float, typer.Option(help="LDP clip norm C of each upload (the noise added is σ·C).")] = 0.1,
    ldp: Annotated[bool, typer.Option("--ldp/--no-ldp", help="Local differential privacy on uploads.")] = True,
    postgres: Annotated[str | None, typer.Option(
        help="PostgreSQL server URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test "
             "(a fresh database is created on it and dropped afterwards).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for data, training, batching and LDP noise.")] = 0,
    features: Annotated[str, typer.Option(help="Input kinds: full (item statistics and item code served by the "
                                               "aggregator's item table, on-device history) or base.")] = "full",
    without: Annotated[str, typer.Option(help="Kinds switched off from full (item_stats, item_code, "
                                              "history), comma-separated.")] = "",
) -> None:
    """Run the whole system end to end: data → teacher → student → bundle → aggregator → devices."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    console.print(f"fedpa demo: data → teacher → student → bundle → aggregator → devices, written to {out} "
                  "(about 2 minutes on 2 cores; loading the libraries first)")  # before torch's import
    config = DemoConfig(out=out, dataset=dataset, data_dir=data_dir, max_users=max_users, train_epochs=train_epochs,
                        seed=seed, rounds=rounds, devices=devices,
                        workers=workers, ldp=ldp, epsilon=epsilon, clip_norm=clip_norm, postgres=postgres,
                        features=features, without=without)
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)
    tasks: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done)

    with bars:  # a FedPAError becomes one `error:` line in fedpa.cli_common
        report = run_demo(config, say=lambda m: bars.console.print(f"[dim]·[/dim] {m}"), progress=progress)
    console.print(format_report(report))


def format_report(report: DemoReport) -> str:
    """The short plain-text summary the CLI prints."""
    def row(name: str, m: dict[str, float]) -> str:
        return f"  {name:<34} GAUC {m.get('gauc', float('nan')):.4f}   AUC {m.get('auc', float('nan')):.4f}"

    lines = [
        "",
        f"FedPA demo — {report.devices} devices, {len(report.rounds)} rounds over HTTP ({report.database}), "
        f"{report.failed_rounds} failed rounds",
        "  inputs: feature tables" + "".join(f" + {k}" for k in report.input_kinds)
        + (f"; item table v{report.item_table['table_version']}: {report.item_table['items']:,} items, "
           f"{report.item_table['row_bytes']} B per candidate row" if report.item_table else ""),
        row("FM-only (distilled student)", report.fm_only),
        row("before adaptation (bundle, round 0)", report.before),
        row(f"after adaptation (round {report.best_round}, best val)", report.after),
        "  validation GAUC {:.4f} before, {:.4f} at round {} (the round is picked on validation AUC)".format(
            report.validation.get("before", {}).get("gauc", float("nan")),
            report.validation.get("after", {}).get("gauc", float("nan")), report.best_round),
        *([f"  {report.discarded_runs} local run(s) diverged in round(s) {report.diverged_rounds} and were discarded "
           "(adapters kept, zero update sent): see max_loss in report.json"] if report.diverged_rounds else []),
        f"  uploaded {report.bytes_up / 1e6:.2f} MB in all ({report.upload_bytes_per_device_round / 1e3:.1f} kB per "
        f"device per round), downloaded {report.bytes_down / 1e6:.2f} MB",
        ("  privacy: Gaussian LDP, σ = {:.3f}, ε spent ≤ {:.2f} per user (δ = {:g})".format(
            report.noise_multiplier or 0.0, report.epsilon or 0.0, report.config["delta"])
         if report.epsilon is not None else "  privacy: LDP off (--no-ldp)"),
        "  wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items())
        + f" — total {sum(report.seconds.values()):.1f}s",
        f"  plot: {report.plot}   report: {Path(report.plot or '.').with_name('report.json')}",
    ]
    return "\n".join(lines)


demo_app = typer.Typer(help="The end-to-end demo.", add_completion=False, pretty_exceptions_enable=False)
demo_app.command("demo", cls=FedPACommand)(demo)
