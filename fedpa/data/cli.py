"""``fedpa data …`` commands: a thin typer layer over :mod:`fedpa.data` (mounted by ``harness.cli``).

Usage: ``fedpa data stats --dataset kuaisar-r --data-dir ../shared/data``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fedpa.cli_common import make_app
from fedpa.data.build import split_rule
from fedpa.data.dataset import dataset_stats
from fedpa.data.loaders import DATASET_NAMES, load_dataset

__all__ = ["data_app", "parse_dataset_options", "report_rows"]


def parse_dataset_options(pairs: list[str] | None) -> dict[str, Any]:
    """Repeated ``--option KEY=VALUE`` flags → ``load_dataset`` keyword options.

    Values are read as JSON when they are JSON (``n_users=2000`` → int, ``drift=1.5`` → float,
    ``flag=true`` → bool) and kept as text otherwise, so every CLI passes options the same way.
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


data_app = make_app(help="Inspect datasets: loaders, open/private splits and encoders.", no_args_is_help=True)


@data_app.callback()
def _group() -> None:
    """Inspect datasets: loaders, open/private splits and encoders."""
    # A callback keeps ``data_app`` a command group even with one command, so ``stats`` is a
    # sub-command both here and once mounted as ``fedpa data``.


def report_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The report flattened to (key, value) text pairs; nested dicts become ``key.sub`` rows."""
    rows: list[tuple[str, str]] = []
    for key, value in report.items():
        if isinstance(value, dict):
            rows.extend((f"{key}.{k}", _fmt(v)) for k, v in value.items())
        else:
            rows.append((key, _fmt(value)))
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


@data_app.command("stats")
def stats(
    dataset: Annotated[str, typer.Option(help=f"Dataset name: {', '.join(DATASET_NAMES)}.")] = "synthetic",
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the files (default: $FEDPA_DATA_DIR).")] = None,
    split: Annotated[str, typer.Option(help="Open/private rule: attribute or time.")] = "attribute",
    seed: Annotated[int, typer.Option(help="Seed of the open/private draw.")] = 0,
    item_id_buckets: Annotated[int, typer.Option(help="Add a hashed item-id feature with this many buckets.")] = 0,
    max_users: Annotated[int | None, typer.Option(help="Subsample this many users first.")] = None,
) -> None:
    """Print users, items, interactions and positive rate per split, then the loader's report."""
    console = Console()
    ds = load_dataset(dataset, data_dir, split=split_rule(split), seed=seed,
                      item_id_buckets=item_id_buckets, max_users=max_users)
    table = Table(title=f"{ds.name} ({split} split, seed {seed})")
    for col in ("split", "users", "items", "interactions", "positive rate"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for row in dataset_stats(ds):
        table.add_row(row["split"], f"{row['users']:,}", f"{row['items']:,}", f"{row['interactions']:,}",
                      f"{row['positive_rate']:.4f}")
    console.print(table)
    report = Table(title="report")
    report.add_column("key")
    report.add_column("value", overflow="fold")
    for key, value in report_rows(ds.report):
        report.add_row(key, value)
    console.print(report)
