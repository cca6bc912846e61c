"""``fedpa-edge``, as installed: the device commands of :mod:`edge.cli` plus ``fleet``, a simulated fleet.

Why here and not in :mod:`edge.cli`: a fleet is simulation harness (it loads a dataset and plays every
private user against a real aggregator), not something a phone runs; ``edge`` must not import the
dataset loaders. Users still type ``fedpa-edge fleet``: the console script points at this app, which
registers the device commands (same callback, help and order as before) and the fleet beside them.

Usage::

    fedpa-edge fleet --server http://127.0.0.1:8000 --model-id demo --allow-unsigned --dataset synthetic --rounds 5
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edge import cli as device
from edge.cli import (
    _TRAINING,
    AllowUnsigned,
    Batch,
    Clip,
    Delta,
    Epochs,
    Epsilon,
    Lr,
    MaxClip,
    MinSigma,
    ModelId,
    NoLdp,
    Server,
    Sigma,
    TrustKey,
    _policy,
    _privacy,
    _trust,
    console,
)
from fedpa.cli_common import make_app
from fedpa.data.cli import parse_dataset_options
from fedpa.schedule import LocalTraining

__all__ = ["app", "fleet"]


def _bars() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def fleet(
    server: Server,
    model_id: ModelId,
    dataset: Annotated[str, typer.Option(help="synthetic | kuaisar-r | kuairand | csv")] = "synthetic",
    data_dir: Annotated[Path | None, typer.Option(help="Dataset directory.")] = None,
    option: Annotated[list[str] | None, typer.Option(help="load_dataset option KEY=VALUE (repeatable), "
                                                          "e.g. n_users=200 for synthetic data.")] = None,
    root: Annotated[Path, typer.Option(help="Folder for the devices' stores (kept between runs).")] = Path(
        "runs/fleet"),
    fresh: Annotated[bool, typer.Option(help="Delete the devices' stores first and start new devices (new "
                                             "adapters, a new ε budget: only for a new experiment).")] = False,
    devices: Annotated[int | None, typer.Option(min=1, help="Devices (default: every private user).")] = None,
    rounds: Annotated[int, typer.Option(min=1)] = 5,
    workers: Annotated[int, typer.Option(min=1, help="Device threads.")] = 4,
    admin_token: Annotated[str | None, typer.Option(envvar="FEDPA_ADMIN_TOKEN",
                                                    help="Lets the fleet close rounds itself.")] = None,
    trust_key: TrustKey = None, allow_unsigned: AllowUnsigned = False,
    epsilon: Epsilon = 8.0, delta: Delta = 1e-5, min_noise_multiplier: MinSigma = None, max_clip_norm: MaxClip = 1.0,
    noise_multiplier: Sigma = None, clip_norm: Clip = None, no_ldp: NoLdp = False,
    lr: Lr = _TRAINING.lr, epochs: Epochs = _TRAINING.epochs, batch_size: Batch = _TRAINING.batch_size,
    seed: Annotated[int, typer.Option(help="Dataset, batch-order and noise seed.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the fleet report here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a per-round GAUC/AUC plot (PNG) here.")] = None,
) -> None:
    """Simulate one device per private user of a dataset, in parallel, against a real aggregator."""
    from edge.client import AggregatorClient
    from fedpa.data import load_dataset
    from fedpa.data.loaders import check_dataset_options
    from fedpa.manifest import Manifest
    from harness.fleet import DIVERGED_LOSS, FleetConfig, existing_stores, run_fleet
    from harness.plots import plot_rounds

    check_dataset_options(dataset, parse_dataset_options(option))  # bad options first, before any setup
    key = _trust(trust_key, allow_unsigned)
    policy = _policy(no_ldp=no_ldp, epsilon=epsilon, delta=delta, min_sigma=min_noise_multiplier,
                     max_clip=max_clip_norm)
    with console.status(f"loading {dataset}…"):
        ds = load_dataset(dataset, data_dir, seed=seed, **parse_dataset_options(option))
    with AggregatorClient(server, token=admin_token) as client:
        if client.token is None:  # reading the manifest needs a token: an observer device's will do
            client.register(model_id)
        manifest = Manifest.model_validate(client.manifest(model_id))
    # each device re-checks the bundle (signature, policy) when it installs it; this only picks σ and C
    privacy = _privacy(manifest.privacy, policy, sigma=noise_multiplier, clip=clip_norm)
    config = FleetConfig(server=server, model_id=model_id, rounds=rounds, workers=workers, max_devices=devices,
                         privacy=privacy, policy=policy, trust_key=key,
                         training=LocalTraining(lr=lr, epochs=epochs, batch_size=batch_size),
                         seed=seed, admin_token=admin_token, fresh=fresh)
    kept, eps = existing_stores(root)
    if fresh or not kept:
        console.print(f"starting new devices in {root}" + (f" (--fresh: {kept} earlier stores deleted, their "
                                                            "privacy budgets with them)" if kept else ""))
    else:
        console.print(f"resuming the {kept} device stores in {root}: adapters and spent privacy budget carry over "
                      f"(most ε spent so far {eps:.3f}); --fresh starts new devices")
    bars = _bars()
    tasks: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done)

    with bars:
        report = run_fleet(ds, root, config, progress=progress)
    table = Table("round", "statuses", "state version", "val GAUC", "test GAUC", "test AUC", "train loss")
    initial = report.initial
    if initial:
        table.add_row("0", "", "", f"{initial['val']['gauc']:.4f}", f"{initial['test']['gauc']:.4f}",
                      f"{initial['test']['auc']:.4f}", "")
    for r in report.rounds:
        val, test = r.get("val", {}), r.get("test", {})
        table.add_row(str(r["round"]), json.dumps(r["statuses"]), str(r["state_version"]),
                      f"{val.get('gauc', float('nan')):.4f}", f"{test.get('gauc', float('nan')):.4f}",
                      f"{test.get('auc', float('nan')):.4f}",
                      "[red]diverged[/red]" if r.get("diverged") else f"{r['loss']:.4f}")
    console.print(table)
    console.print(f"{report.devices} devices, {report.failed_rounds} failed rounds, best round {report.best_round}, "
                  f"uploaded {report.bytes_up / 1e6:.2f} MB, max ε {report.epsilon_max:.3f}, {report.seconds:.1f} s")
    if report.budget_refusals:
        console.print(f"[yellow]{report.budget_refusals} device-rounds refused: those devices' ε budget is spent "
                      "(they keep it across runs; --fresh starts new devices)[/yellow]")
    if report.diverged_rounds:
        console.print(f"[yellow]{report.discarded_runs} local run(s) diverged in round(s) {report.diverged_rounds} "
                      f"(a non-finite step, or mean loss above {DIVERGED_LOSS:g}) and were discarded (adapters kept, "
                      "zero update sent): lower --lr, or lower --clip-norm (the LDP noise added per upload is σ·C) "
                      "or raise the ε budget so the shared state carries less noise[/yellow]")
    for line in report.errors[:10]:
        console.print(f"[yellow]{line}[/yellow]")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2, default=float))
    if plot:
        console.print(f"plot: {plot_rounds(report, plot)}")


app = make_app(help=device.app.info.help, no_args_is_help=True)
app.callback()(device._main)
app.command()(device.run)
app.command()(fleet)
app.command()(device.recommend)


if __name__ == "__main__":  # `python -m harness.edge_cli …`: the same command from a source tree
    app()
