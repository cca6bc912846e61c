"""``fedpa simulate`` and ``fedpa experiments``: thin typer wrappers over ``fedpa.sim``.

Mounted into the main CLI (``harness.cli``), which also turns FedPA errors into one clean line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedpa.data.cli import parse_dataset_options

__all__ = ["experiments", "simulate"]

console = Console()

DatasetOpt = Annotated[str, typer.Option(help="kuaisar-r | kuairand | csv | synthetic")]
DataDirOpt = Annotated[Path | None, typer.Option(help="Directory with the dataset's files (not for synthetic).")]
RoundsOpt = Annotated[int, typer.Option(help="Federated rounds (paper: 30).")]
FractionOpt = Annotated[float, typer.Option(help="Fraction of private users per round (paper: 1.0).")]
EpochsOpt = Annotated[int, typer.Option("--local-epochs", help="Local epochs per round (paper: 1).")]
FeaturesOpt = Annotated[str, typer.Option(help="Model inputs: 'full' (item statistics, item code, on-device "
                                               "history, as the dataset supports) or 'base' (feature tables only).")]
WithoutOpt = Annotated[str, typer.Option(help="Input kinds to switch off with --features full, comma-separated: "
                                              "item_stats, item_code, history.")]
RefitOpt = Annotated[bool, typer.Option(
    help="Score test after re-running the validation-picked rounds on train + validation rows (what a device "
         "has seen by the test period; docs/simulation.md).")]
OptionOpt = Annotated[list[str] | None, typer.Option("--option", help="Dataset option KEY=VALUE (repeatable), "
                                                                      "e.g. n_users=1000 for synthetic.")]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[status]}"), console=console, transient=False)


def simulate(
    dataset: DatasetOpt = "synthetic",
    data_dir: DataDirOpt = None,
    option: OptionOpt = None,
    method: Annotated[str, typer.Option(help="fm-only, user-ctr, local-only, fedavg-full, fedavg-lora, "
                                             "global-private-lora, fedpa-paper, fedpa-zero-init, fedpa")] = "fedpa",
    rounds: RoundsOpt = 30,
    fraction: FractionOpt = 1.0,
    local_epochs: EpochsOpt = 1,
    seed: Annotated[int, typer.Option(help="Seed for the split, the student, initialisation, batches, noise.")] = 0,
    lr: Annotated[float | None, typer.Option(help="Client SGD learning rate (default: the method's).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Client mini-batch size (default: the method's).")] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank (default: the method's).")] = None,
    server_lr: Annotated[float, typer.Option(help="Server learning rate on the averaged delta.")] = 1.0,
    strategy: Annotated[str, typer.Option(help="Aggregation strategy: mean | trimmed-mean | median.")] = "mean",
    trim_beta: Annotated[float, typer.Option(help="Fraction trimmed at each end (trimmed-mean).")] = 0.1,
    min_reporters: Annotated[int, typer.Option(help="Update a group adapter only with this many reporters.")] = 1,
    norm_bound: Annotated[float | None, typer.Option(help="L2 bound on each client's update.")] = None,
    weight_cap: Annotated[float | None, typer.Option(help="Cap on a client's example-count weight.")] = None,
    ldp_noise: Annotated[float | None, typer.Option(help="LDP: Gaussian noise multiplier σ (off if unset).")] = None,
    ldp_epsilon: Annotated[float | None, typer.Option(help="LDP: target ε over all rounds (sets σ).")] = None,
    clip_norm: Annotated[float, typer.Option(help="LDP: clip norm C of each upload.")] = 1.0,
    wire_dtype: Annotated[str, typer.Option(help="Upload encoding: fp32 | fp16 | int8.")] = "fp32",
    packed: Annotated[bool, typer.Option(help="Upload all tensors as one packed array.")] = False,
    student: Annotated[Path | None, typer.Option(help="Student checkpoint (default: trained and cached).")] = None,
    features: FeaturesOpt = "full",
    without: WithoutOpt = "",
    refit: RefitOpt = False,
    out: Annotated[Path, typer.Option(help="Result JSON.")] = Path("runs/simulate.json"),
) -> None:
    """Run one method for R rounds and write its result JSON (metrics at the best validation round)."""
    from fedpa.data import load_dataset
    from fedpa.errors import ConfigError
    from fedpa.privacy import PrivacyConfig, noise_multiplier_for
    from fedpa.sim.experiments import cached_student
    from fedpa.sim.methods import get_method
    from fedpa.sim.runner import SimConfig
    from fedpa.sim.runner import simulate as run_simulation
    from fedpa.sim.server import AggregationConfig
    from fedpa.train import load_checkpoint

    overrides: dict[str, Any] = {k: v for k, v in (("lr", lr), ("batch_size", batch_size), ("rank", rank))
                                 if v is not None}
    chosen = get_method(method, **overrides)
    privacy = None
    if ldp_epsilon is not None:
        ldp_noise = noise_multiplier_for(ldp_epsilon, rounds)
    if ldp_noise is not None:
        privacy = PrivacyConfig(clip_norm=clip_norm, noise_multiplier=ldp_noise)
    config = SimConfig(rounds=rounds, fraction=fraction, local_epochs=local_epochs, seed=seed, privacy=privacy,
                       aggregation=AggregationConfig(strategy=strategy, trim_beta=trim_beta, server_lr=server_lr,
                                                     min_reporters=min_reporters, norm_bound=norm_bound,
                                                     weight_cap=weight_cap),
                       wire_dtype=wire_dtype, packed=packed, refit=refit)  # type: ignore[arg-type]
    with console.status(f"loading {dataset}…"):
        ds = load_dataset(dataset, data_dir, seed=seed, features=features, without=without,
                          **parse_dataset_options(option))
    if student is not None:
        ckpt = load_checkpoint(student)
        if ckpt.schema.to_dict() != ds.schema.to_dict():
            raise ConfigError(f"{student}: the student's feature schema differs from {dataset}'s (different data, "
                              "seed or --features/--without)")
        model = ckpt.model
    else:
        with console.status("pre-training and distilling the student (cached)…"):
            model = cached_student(ds, seed=seed, cache_dir=out.parent / "students")
    with _progress() as bar:
        task = bar.add_task(f"{method} on {dataset}", total=max(rounds, 1), status="")

        def on_round(point: dict[str, Any]) -> None:
            bar.update(task, advance=1, status=f"val GAUC {point['val']['gauc']:.4f}  {point['seconds']:.2f}s")

        result = run_simulation(ds, model, chosen, config, progress=on_round)
        bar.update(task, completed=max(rounds, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=2, default=float))
    table = Table("method", "best round", "test AUC", "test GAUC", "logloss", "s/round", "upload B", "download B")
    t = result.test
    table.add_row(result.method, str(result.best_round), f"{t['auc']:.4f}", f"{t['gauc']:.4f}", f"{t['logloss']:.4f}",
                  f"{result.seconds_per_round:.3f}", f"{result.upload_bytes_per_client_round:,.0f}",
                  f"{result.download_bytes_per_client_round:,.0f}")
    console.print(table)
    console.print(f"wrote {out}")


def experiments(
    dataset: DatasetOpt = "synthetic",
    data_dir: DataDirOpt = None,
    option: OptionOpt = None,
    seeds: Annotated[int, typer.Option(help="Seeds 0..N-1 (split, student and simulation).")] = 3,
    rounds: RoundsOpt = 30,
    fraction: FractionOpt = 1.0,
    local_epochs: EpochsOpt = 1,
    methods: Annotated[str | None, typer.Option(help="Comma-separated subset of the table's methods.")] = None,
    tune: Annotated[bool, typer.Option(help="Tune each method's settings on seed 0's validation split.")] = True,
    features: FeaturesOpt = "full",
    without: WithoutOpt = "",
    pick_inputs: Annotated[bool, typer.Option(
        help="Pick the input kinds (with --features full) on seed 0's validation GAUC of FM-only: one student "
             "per subset of kinds; the pick replaces --without.")] = False,
    refit: RefitOpt = False,
    out_dir: Annotated[Path, typer.Option(help="Results folder (markdown, JSON, PNG, cached students).")] = Path(
        "runs/experiments"),
) -> None:
    """Run the docs/design.md §8 table (mean ± std over seeds) and write markdown, JSON and a GAUC-per-round PNG."""
    from fedpa.data.loaders import check_dataset_options
    from fedpa.sim.experiments import TABLE_METHODS, ExperimentConfig, run_experiments

    check_dataset_options(dataset, parse_dataset_options(option))  # before the results folder is made
    chosen = tuple(m.strip() for m in methods.split(",")) if methods else TABLE_METHODS
    config = ExperimentConfig(rounds=rounds, fraction=fraction, local_epochs=local_epochs, seeds=tuple(range(seeds)),
                              methods=chosen, tune=tune, dataset_options=parse_dataset_options(option),
                              features=features, without=tuple(w.strip() for w in without.split(",") if w.strip()),
                              pick_inputs=pick_inputs, refit=refit)
    # The bar counts finished trials (one per seed and method); tuning runs show as status only.
    trial_starts = tuple(f"seed {s}: {m} " for s in config.seeds for m in chosen)
    started = 0
    with _progress() as bar:
        task = bar.add_task(f"experiments on {dataset}", total=len(trial_starts), status="")

        def on_event(message: str) -> None:
            nonlocal started
            started += message.startswith(trial_starts)
            bar.update(task, completed=max(started - 1, 0), status=message)

        paths = run_experiments(dataset, data_dir, config, out_dir, progress=on_event)
        bar.update(task, completed=len(trial_starts), status="done")
    console.print(Path(paths["markdown"]).read_text())
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
