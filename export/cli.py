"""``fedpa-export``: build, verify and inspect bundles. Flags map onto export.* functions; no logic here."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table

from fedpa.cli_common import make_app, setup_logging
from fedpa.data.cli import parse_dataset_options
from fedpa.errors import BundleError
from fedpa.manifest import PrivacySettings
from fedpa.wire import MANIFEST_NAME

__all__ = ["app"]

app = make_app(help="Package a trained FedPA foundation model into a verified on-device bundle.",
               no_args_is_help=True, add_completion=False)
console = Console(stderr=True)
out_console = Console()


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every step and show libraries' "
                                                "warnings and tracebacks.")] = False) -> None:
    setup_logging(verbose)


def _show(console: Console, status: Status, message: str) -> None:
    """A progress message: logged above the spinner and shown beside it."""
    console.log(message)
    status.update(message)


def _kinds(features: str, without: str) -> dict[str, str]:
    """load_dataset's input-kind options; the defaults (full, nothing off) are left to load_dataset."""
    return {**({"features": features} if features != "full" else {}), **({"without": without} if without else {})}


@app.command()
def build(
    out: Annotated[Path, typer.Option("--out", help="Bundle directory to create.")],
    teacher: Annotated[Path | None, typer.Option(help="Teacher checkpoint to distil from (or a student one).")] = None,
    student: Annotated[Path | None, typer.Option(help="Student checkpoint to export as is.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name (kuaisar-r, kuairand, csv, synthetic).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Directory with the dataset's files.")] = None,
    option: Annotated[list[str], typer.Option(help="Dataset option KEY=VALUE (repeatable).")] = [],  # noqa: B006
    split: Annotated[str, typer.Option(help="Open/private split: attribute or time.")] = "attribute",
    features: Annotated[str, typer.Option(
        help="Input kinds when training from a dataset: full (item statistics, item code, history — served "
             "per candidate / kept on the device) or base (the feature tables only).")] = "full",
    without: Annotated[str, typer.Option(
        help="Kinds to switch off from full, comma-separated (item_stats, item_code, history).")] = "",
    model_id: Annotated[str, typer.Option(help="Model id in the manifest.")] = "fedpa",
    model_version: Annotated[int, typer.Option(help="Model version (≥ 1).")] = 1,
    gate_mode: Annotated[str, typer.Option(
        help="residual (ours: starts exactly at the student, the `fedpa` method of docs/RESULTS.md) or paper "
             "(the paper's softmax over branches).")] = "residual",
    rank: Annotated[int, typer.Option(help="LoRA rank of user and group adapters.")] = 4,
    alpha: Annotated[float, typer.Option(help="LoRA scale numerator (outputs × alpha/rank).")] = 8.0,
    private_user_embeddings: Annotated[bool, typer.Option(help="Fine-tune user feature embeddings privately.")]
    = False,
    mechanism: Annotated[str, typer.Option(help="Default LDP mechanism: gaussian, laplace or none.")] = "gaussian",
    clip_norm: Annotated[float, typer.Option(help="Default L2 clip of a shared update.")] = 1.0,
    noise_multiplier: Annotated[float | None, typer.Option(
        help="Noise multiplier σ (default: the σ that keeps --rounds uploads within --epsilon-budget, "
             "replacement adjacency).")] = None,
    delta: Annotated[float, typer.Option(help="Default δ of the privacy accountant.")] = 1e-5,
    epsilon_budget: Annotated[float, typer.Option(help="Per-user ε budget the publisher asks for (devices keep "
                                                       "their own, default 8).")] = 8.0,
    planned_rounds: Annotated[int, typer.Option("--rounds", min=1, help="Uploads per user σ is planned for.")] = 30,
    signing_key: Annotated[Path | None, typer.Option(
        help="Publisher key (`fedpa-export keygen`) that signs the manifest; devices pinning its "
             "publisher.pub refuse anything else.")] = None,
    max_batch: Annotated[int, typer.Option(help="Most candidates one inference call takes.")] = 1024,
    max_train_batch: Annotated[int, typer.Option(help="Largest training batch.")] = 1024,
    seed: Annotated[int, typer.Option(min=0, max=0xFFFFFFFF, help="Seed for data split, training, initial "
                                      "adapters (the bank's law), golden vectors.")] = 0,
    save_student: Annotated[Path | None, typer.Option(
        help="Also write the exported student as a checkpoint here: `fedpa-export items --student` needs it "
             "for the item vectors the item table serves.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle at --out.")] = False,
) -> None:
    """Distil the student if needed, lower it to ExecuTorch/ONNX and write a self-verified bundle."""
    from export.bundle import build_bundle
    from export.source import resolve_student
    from fedpa.privacy import noise_multiplier_for
    from fedpa.signing import load_private_key
    from fedpa.train import adapter_config_for

    key = load_private_key(signing_key) if signing_key is not None else None
    if noise_multiplier is None:
        noise_multiplier = (0.0 if mechanism == "none" else
                            noise_multiplier_for(epsilon_budget, planned_rounds, delta=delta,
                                                 mechanism=mechanism))  # type: ignore[arg-type]
    privacy = PrivacySettings(mechanism=mechanism, clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                              delta=delta, epsilon_budget=epsilon_budget, rounds=planned_rounds)
    with console.status("preparing the student…") as status:
        source = resolve_student(student=student, teacher=teacher, dataset=dataset, data_dir=data_dir,
                                 dataset_options={**parse_dataset_options(option), **_kinds(features, without)},
                                 split=split, seed=seed,
                                 progress=lambda m: _show(console, status, m))
    adapter = adapter_config_for(source.schema, rank=rank, alpha=alpha, gate_mode=gate_mode,
                                 private_user_embeddings=private_user_embeddings)
    start = time.perf_counter()
    with console.status("lowering and packaging…"):
        result = build_bundle(source.model, source.schema, out, model_id=model_id, model_version=model_version,
                              adapter=adapter, privacy=privacy, metrics=source.metrics, seed=seed,
                              max_batch=max_batch, max_train_batch=max_train_batch, overwrite=overwrite,
                              progress=console.log, signing_key=key)
    if save_student is not None:
        from fedpa.train import save_checkpoint

        save_checkpoint(save_student, source.model, source.schema, kind="student", metrics=source.metrics)
        console.print(f"wrote the student to {save_student} (for `fedpa-export items --student`)")
    total = sum(e.size for e in result.manifest.files.values()) + (result.path / MANIFEST_NAME).stat().st_size
    console.print(f"[green]wrote[/] {result.path} ({total / 1024:.1f} KiB) in {time.perf_counter() - start:.1f} s "
                  f"after training; golden parity: {len(result.parity.checks)} checks passed"
                  + ("; signed" if key is not None else "; [yellow]unsigned[/] (devices that pin a key refuse it)"))


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Folder for publisher.key (secret, 0600) and publisher.pub.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing key pair.")] = False,
) -> None:
    """Write a publisher signing key pair (ECDSA P-256): sign with the .key, pin the .pub on devices."""
    from fedpa.signing import generate_keypair, load_public_key

    key_path, pub_path = generate_keypair(out, overwrite=overwrite)
    out_console.print(f"wrote {key_path} (keep it secret, off the server) and {pub_path} "
                      f"(key id {load_public_key(pub_path).key_id[:16]})")


@app.command()
def sign(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    signing_key: Annotated[Path, typer.Option(help="Publisher key from `fedpa-export keygen`.")],
) -> None:
    """Sign an existing bundle's manifest (hashes checked first): writes manifest.sig beside it."""
    from fedpa.manifest import read_manifest
    from fedpa.signing import load_private_key, sign_bundle

    key = load_private_key(signing_key)
    read_manifest(bundle)
    path = sign_bundle(bundle, key)
    out_console.print(f"wrote {path}")


@app.command()
def items(
    bundle: Annotated[Path, typer.Option(help="The bundle the table serves (its model id, version and schema).")],
    out: Annotated[Path, typer.Option("--out", help="Item table file to write (safetensors).")],
    dataset: Annotated[str, typer.Option(help="Dataset the bundle was built from (kuaisar-r, kuairand, csv, "
                                              "synthetic).")],
    data_dir: Annotated[Path | None, typer.Option(help="Directory with the dataset's files (the current open log).")]
    = None,
    option: Annotated[list[str], typer.Option(help="Dataset option KEY=VALUE, as for the build (repeatable).")]
    = [],  # noqa: B006
    split: Annotated[str, typer.Option(help="Open/private split, as for the build.")] = "attribute",
    seed: Annotated[int, typer.Option(help="Seed, as for the build (the split depends on it).")] = 0,
    student: Annotated[Path | None, typer.Option(
        help="The student checkpoint the bundle was built from (`build --save-student`, or its --student): "
             "its item-code rows become the table's item vectors. Required when the bundle's programs take "
             "item vectors.")] = None,
    table_version: Annotated[int | None, typer.Option(
        help="The table's own version (default: unix time in seconds, so a refresh is always newer).")] = None,
    as_of: Annotated[int | None, typer.Option(help="Count only open-log rows before this time (ms).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file at --out.")] = False,
) -> None:
    """Compute the item table (item code, statistic codes and item vector per item) from the open log, for publishing.

    Publish it with `POST /v1/models/{model_id}/items` (docs/api.md); a refresh is a new table
    version of the same model version, no new bundle.
    """
    from export.items import bundle_kinds, student_item_vectors, write_item_table
    from fedpa.data import load_dataset, split_rule
    from fedpa.errors import ConfigError, DataError
    from fedpa.signals import SIGNAL_KINDS

    _, kinds = bundle_kinds(bundle)
    code_vectors = student_item_vectors(student, bundle)  # before the slow dataset load: fail fast
    without_kinds = ",".join(k for k in SIGNAL_KINDS if k not in kinds)
    with console.status(f"loading {dataset} as the bundle was built (kinds: {', '.join(kinds) or 'none'})…"):
        try:
            ds = load_dataset(dataset, data_dir, split=split_rule(split), seed=seed,
                              features="full" if kinds else "base", without=without_kinds if kinds else (),
                              **parse_dataset_options(option))
        except (ConfigError, DataError) as exc:
            raise BundleError(f"dataset {dataset!r}: {exc}") from exc
    result = write_item_table(bundle, ds, out, table_version=table_version, as_of_ms=as_of,
                              overwrite=overwrite, code_vectors=code_vectors)
    meta = result.table.meta
    per_row = 4 + len(meta.columns) + 1 + (meta.vector_dim + 4 if meta.vector_dim else 0)
    console.print(f"[green]wrote[/] {result.path}: {len(result.table):,} items × {len(meta.columns)} stat columns "
                  f"+ {meta.vector_dim}-d item vectors for {meta.model_id} v{meta.model_version}, table_version "
                  f"{meta.table_version} ({result.nbytes / 1024:.1f} KiB, {result.bytes_per_item:.1f} B/item; a "
                  f"lookup answer is {per_row} B/candidate + its header)")


@app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    skip_onnx: Annotated[bool, typer.Option(help="Replay golden vectors on the .pte programs only.")] = False,
    trust_key: Annotated[Path | None, typer.Option(
        help="Publisher public key (publisher.pub): the bundle must carry its signature.")] = None,
) -> None:
    """Check signature, hashes and manifest, then replay the golden vectors through .pte, .onnx and training .pte."""
    from export.verify import verify_bundle
    from fedpa.signing import load_public_key

    trusted = load_public_key(trust_key) if trust_key is not None else None
    result = verify_bundle(bundle, backends=("pte",) if skip_onnx else ("pte", "onnx"), trust_key=trusted)
    table = Table(title=f"{bundle}: golden-vector parity")
    table.add_column("check")
    table.add_column("max |error|", justify="right")
    table.add_column("ok")
    for c in result.parity.checks:
        if not c.name.startswith(("gradient ", "SGD update ")) or not c.ok:
            table.add_row(c.name, f"{c.max_abs_error:.2e}", "[green]✓[/]" if c.ok else "[red]✗[/]")
    grads = [c for c in result.parity.checks if c.name.startswith(("gradient ", "SGD update "))]
    if grads:
        table.add_row(f"{len(grads)} gradient / update tensors", f"{max(c.max_abs_error for c in grads):.2e}",
                      "[green]✓[/]" if all(c.ok for c in grads) else "[red]✗[/]")
    out_console.print(table)
    if not result.ok:
        raise BundleError(f"{len(result.parity.failures())} parity checks failed (table above)")
    signed = "signature, " if trust_key is not None else ""
    out_console.print(f"[green]OK[/]: {signed}hashes, manifest and {len(result.parity.checks)} parity checks")


@app.command()
def inspect(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Sizes, parameter counts per owner group, feature schema, programs and tool versions."""
    from export.verify import summarise

    info = summarise(bundle)
    if as_json:  # machine-readable: plain text, never colour, whatever FORCE_COLOR says
        typer.echo(json.dumps(info, indent=2, default=str), color=False)
        return
    out_console.print(f"[bold]{info['model_id']}[/] v{info['model_version']} (format {info['format_version']}, "
                      f"created {info['created_at']}) — {info['total_bytes'] / 1024:.1f} KiB")
    for title, rows, headers in (
        ("files", [(k, f"{v:,}") for k, v in info["files"].items()], ("file", "bytes")),
        ("parameters", [(k, f"{v:,}") for k, v in info["parameters"].items()], ("group", "count")),
        ("features", [(f["name"], f["source"], f["kind"], str(f["codes"])) for f in info["features"]],
         ("feature", "source", "kind", "codes")),
        ("programs", [(k, p["file"], p["runtime"], p["kind"], str(p["inputs"]), str(p["max_batch"]))
                      for k, p in info["programs"].items()], ("key", "file", "runtime", "kind", "inputs", "max batch")),
        ("toolchain", list(info["toolchain"].items()), ("tool", "version")),
    ):
        table = Table(title=title)
        for h in headers:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        out_console.print(table)
    out_console.print(f"groups: {info['group_attributes']}; adapter: rank {info['adapter'].get('rank')}, "
                      f"gate {info['adapter'].get('gate_mode')}; privacy: {info['privacy']}")


def main() -> None:
    """Entry point (``fedpa-export``); bad input becomes one ``error:`` line (see :mod:`fedpa.cli_common`)."""
    app()


if __name__ == "__main__":
    main()
