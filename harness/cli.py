"""The ``fedpa`` command line: thin wrappers that map flags onto the library's functions.

It lives on the top floor (``harness``) because it composes every floor: ``fedpa demo`` runs the
export pipeline, the aggregator and a fleet of devices; the others only call into ``fedpa``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

# These modules import torch only inside their commands, so `fedpa --help` stays fast.
from fedpa.cli_common import make_app, setup_logging
from fedpa.data.cli import data_app
from fedpa.privacy_cli import privacy_app
from fedpa.sim.cli import experiments, simulate
from harness.demo import demo

if TYPE_CHECKING:
    from fedpa.data import Dataset

__all__ = ["app"]

app = make_app(
    help="FedPA — federated adaptation of a foundation-model recommender. "
    "Start with `fedpa demo`; see `fedpa COMMAND --help`.",
    no_args_is_help=True,
)
console = Console()

app.add_typer(data_app, name="data", help="Inspect datasets: `fedpa data stats --dataset NAME --data-dir DIR`.")
app.add_typer(privacy_app, name="privacy",
              help="Privacy accounting: `fedpa privacy epsilon --noise-multiplier S --rounds R`.")
app.command("demo")(demo)
app.command("simulate")(simulate)
app.command("experiments")(experiments)

DatasetOpt = Annotated[str, typer.Option(help="kuaisar-r | kuairand | csv | synthetic")]
DataDirOpt = Annotated[Path | None, typer.Option(help="Directory with the dataset's files (not needed for synthetic).")]
SplitOpt = Annotated[str, typer.Option(help="Open/private user split: 'attribute' (paper rule) or 'time'.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for splits, initialisation and batching.")]
EpochsOpt = Annotated[int, typer.Option(help="Upper bound on epochs (keeps the best open-validation GAUC epoch).")]
FeaturesOpt = Annotated[str, typer.Option(help="Model inputs: 'full' (item statistics, item code, on-device "
                                               "history, as the dataset supports) or 'base' (feature tables only).")]
WithoutOpt = Annotated[str, typer.Option(help="Input kinds to switch off with --features full, comma-separated: "
                                              "item_stats, item_code, history.")]


def _load(dataset: str, data_dir: Path | None, split: str, seed: int, features: str = "full",
          without: str = "") -> Dataset:
    from fedpa.data import load_dataset, split_rule

    with console.status(f"loading {dataset}…"):
        return load_dataset(dataset, data_dir, split=split_rule(split), seed=seed, features=features,
                            without=without)


def _write_metrics(path: Path, metrics: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, default=float))
    return path


def _metrics_table(rows: dict[str, dict[str, Any]]) -> Table:
    table = Table("model", "params", "best epoch", "seconds", "private test AUC", "private test GAUC", "logloss")
    for name, m in rows.items():
        t = m["private_test"]
        table.add_row(name, f"{m['parameters']:,}", str(m["best_epoch"]), f"{m['seconds']:.1f}",
                      f"{t['auc']:.4f}", f"{t['gauc']:.4f}", f"{t['logloss']:.4f}")
    return table


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log training progress and show "
                                                "libraries' warnings and tracebacks.")] = False) -> None:
    setup_logging(verbose)


@app.command()
def pretrain(
    dataset: DatasetOpt = "synthetic",
    data_dir: DataDirOpt = None,
    split: SplitOpt = "attribute",
    seed: SeedOpt = 0,
    epochs: EpochsOpt = 30,
    features: FeaturesOpt = "full",
    without: WithoutOpt = "",
    out: Annotated[Path, typer.Option(help="Checkpoint path; metrics go beside it as .json.")] = Path(
        "runs/teacher.pt"),
) -> None:
    """Pre-train the foundation model (teacher) on open users."""
    from fedpa.train import TrainConfig, save_checkpoint
    from fedpa.train import pretrain as run_pretrain

    ds = _load(dataset, data_dir, split, seed, features, without)
    with console.status("pre-training the teacher…") as status:
        result = run_pretrain(ds, train=TrainConfig(epochs=epochs), seed=seed, progress=status.update)
    metrics = {"dataset": dataset, "seed": seed, **result.metrics}
    save_checkpoint(out, result.model, ds.schema, kind="teacher", metrics=metrics)
    console.print(_metrics_table({"teacher": metrics}))
    console.print(f"wrote {out} and {_write_metrics(out.with_suffix('.json'), metrics)}")


@app.command()
def distill(
    teacher: Annotated[Path, typer.Option(help="Teacher checkpoint from `fedpa pretrain`.")],
    dataset: DatasetOpt = "synthetic",
    data_dir: DataDirOpt = None,
    split: SplitOpt = "attribute",
    seed: SeedOpt = 0,
    epochs: EpochsOpt = 30,
    alpha: Annotated[float, typer.Option(help="Weight of the label loss (1-alpha on soft targets).")] = 0.5,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = 2.0,
    scratch: Annotated[bool, typer.Option(help="Also train the student from scratch, for comparison.")] = True,
    features: FeaturesOpt = "full",
    without: WithoutOpt = "",
    out: Annotated[Path, typer.Option(help="Student checkpoint path; metrics go beside it as .json.")] = Path(
        "runs/student.pt"),
) -> None:
    """Distil the on-device student from the teacher (and train it from scratch for comparison)."""
    from fedpa.errors import ConfigError
    from fedpa.train import TrainConfig, load_checkpoint, save_checkpoint, train_from_scratch
    from fedpa.train import distill as run_distill

    ckpt = load_checkpoint(teacher)
    ds = _load(dataset, data_dir, split, seed, features, without)
    if ckpt.schema.to_dict() != ds.schema.to_dict():
        raise ConfigError(f"{teacher}: the teacher's feature schema differs from {dataset}'s (different data, "
                          "split or --features/--without than at pre-training)")
    config = TrainConfig(epochs=epochs, distill_alpha=alpha, temperature=temperature)
    with console.status("distilling the student…") as status:
        result = run_distill(ds, ckpt.model, train=config, seed=seed, progress=status.update)
    rows = {"teacher": ckpt.metrics, "student (distilled)": result.metrics}
    metrics: dict[str, Any] = {"dataset": dataset, "seed": seed, "teacher": ckpt.metrics, **result.metrics}
    if scratch:
        with console.status("training the student from scratch…") as status:
            rows["student (scratch)"] = metrics["scratch"] = train_from_scratch(ds, train=config, seed=seed,
                                                                                progress=status.update).metrics
    save_checkpoint(out, result.model, ds.schema, kind="student", metrics=metrics)
    console.print(_metrics_table(rows))
    console.print(f"wrote {out} and {_write_metrics(out.with_suffix('.json'), metrics)}")


def main() -> None:
    """Entry point (``fedpa``); bad input becomes one ``error:`` line (see :mod:`fedpa.cli_common`)."""
    app()


if __name__ == "__main__":  # `python -m harness.cli …`: the same command from a source tree
    main()
