"""``fedpa-edge``: one device (``run``) and top-K ranking (``recommend``); the installed command adds
a simulated fleet (``fleet``) from the harness (:mod:`harness.edge_cli`), which is not device code.

Thin: flags become :class:`~edge.device.Device` settings and the library does the work. Every
refusal (budget, server, bundle) prints one line and exits 1.

Usage::

    fedpa-edge run --server http://127.0.0.1:8000 --model-id demo --trust-key publisher.pub \
        --interactions me.csv --store ~/.fedpa
    fedpa-edge recommend --store ~/.fedpa --candidates items.csv -k 10
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fedpa.cli_common import make_app, setup_logging
from fedpa.errors import ConfigError
from fedpa.manifest import PrivacySettings
from fedpa.privacy import DevicePolicy, PrivacyConfig
from fedpa.schedule import LocalTraining
from fedpa.signing import PublicKey, load_public_key

__all__ = ["app"]

app = make_app(help="FedPA device client: train on-device, upload LDP updates, rank items.", no_args_is_help=True)
console = Console()

Server = Annotated[str, typer.Option(help="Aggregator base URL.")]
ModelId = Annotated[str, typer.Option(help="Published model id.")]
Epsilon = Annotated[float, typer.Option(help="This device's ε budget over all its uploads (replacement adjacency); "
                                            "uploads past it are refused on the device.")]
Delta = Annotated[float, typer.Option(help="This device's δ of (ε, δ).")]
MinSigma = Annotated[float | None, typer.Option(
    help="Smallest σ this device accepts (default: the σ that fits the bundle's planned rounds in --epsilon).")]
MaxClip = Annotated[float, typer.Option(help="Largest clip norm C this device accepts.")]
Sigma = Annotated[float | None, typer.Option(help="Noise multiplier σ to apply (default: the bundle's; ≥ the floor).")]
Clip = Annotated[float | None, typer.Option(help="Clip norm C to apply (default: the bundle's; ≤ --max-clip-norm).")]
NoLdp = Annotated[bool, typer.Option("--no-ldp", help="Send raw deltas, no privacy at all (only servers that allow "
                                                      "it accept them; debugging).")]
TrustKey = Annotated[Path | None, typer.Option(
    exists=True, dir_okay=False, help="Publisher public key (publisher.pub): only bundles it signed are installed.")]
AllowUnsigned = Annotated[bool, typer.Option("--allow-unsigned",
                                             help="Install unsigned bundles (development servers only).")]
_TRAINING = LocalTraining()  # the device's one set of local-training defaults
Lr = Annotated[float, typer.Option(help="Local SGD learning rate.")]
Epochs = Annotated[int, typer.Option(min=1, help="Local epochs per round.")]
Batch = Annotated[int, typer.Option(min=1, help="Local mini-batch size.")]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every request and round, and show "
                                                "libraries' warnings and tracebacks.")] = False) -> None:
    setup_logging(verbose)


def _policy(*, no_ldp: bool, epsilon: float, delta: float, min_sigma: float | None, max_clip: float
            ) -> DevicePolicy | None:
    """The device's own privacy policy from its flags (None with --no-ldp: the user opted out)."""
    return None if no_ldp else DevicePolicy(epsilon_budget=epsilon, delta=delta, min_noise_multiplier=min_sigma,
                                            max_clip_norm=max_clip)


def _privacy(manifest_privacy: PrivacySettings, policy: DevicePolicy | None, *, sigma: float | None,
             clip: float | None) -> PrivacyConfig | None:
    """What the device applies: the bundle's σ and C (or stricter flags), checked against its policy."""
    if policy is None:
        return None
    return policy.config_for(manifest_privacy, noise_multiplier=sigma, clip_norm=clip)


def _trust(trust_key: Path | None, allow_unsigned: bool) -> PublicKey | None:
    """The pinned publisher key; refusing to guess when none is given."""
    if trust_key is not None:
        return load_public_key(trust_key)
    if not allow_unsigned:
        raise ConfigError("no publisher key pinned: pass --trust-key publisher.pub (from `fedpa-export keygen`), "
                          "or --allow-unsigned for a development server")
    return None


@app.command()
def run(
    server: Server,
    model_id: ModelId,
    interactions: Annotated[Path, typer.Option(exists=True, dir_okay=False,
                                               help="CSV (raw feature columns + label) or .npz (encoded x, y).")],
    store: Annotated[Path, typer.Option(help="The device's local store folder.")] = Path("edge-store"),
    rounds: Annotated[int, typer.Option(min=1, help="Rounds to take part in.")] = 1,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the server to close each round.")] = 60.0,
    trust_key: TrustKey = None, allow_unsigned: AllowUnsigned = False,
    epsilon: Epsilon = 8.0, delta: Delta = 1e-5, min_noise_multiplier: MinSigma = None, max_clip_norm: MaxClip = 1.0,
    noise_multiplier: Sigma = None, clip_norm: Clip = None, no_ldp: NoLdp = False,
    lr: Lr = _TRAINING.lr, epochs: Epochs = _TRAINING.epochs, batch_size: Batch = _TRAINING.batch_size,
    seed: Annotated[int, typer.Option(help="Batch-order seed.")] = 0,
) -> None:
    """Take part in rounds as one device: register, download, train locally, upload an LDP update."""
    import time

    from edge.client import AggregatorClient
    from edge.device import Device
    from edge.items import ItemTableClient
    from edge.local_data import groups_of, read_interaction_log, schema_of
    from edge.signals import DeviceSignals
    from edge.store import LocalStore

    key = _trust(trust_key, allow_unsigned)
    policy = _policy(no_ldp=no_ldp, epsilon=epsilon, delta=delta, min_sigma=min_noise_multiplier,
                     max_clip=max_clip_norm)
    local = LocalStore.open(store)
    with AggregatorClient(server) as client:
        device = Device(local, client, model_id=model_id, policy=policy, trust_key=key,
                        training=LocalTraining(lr=lr, epochs=epochs, batch_size=batch_size, seed=seed))
        device.setup()
        schema = schema_of(device.manifest)
        x, y, ts, ids = read_interaction_log(interactions, schema)
        signals = DeviceSignals(local, schema, items=ItemTableClient(client, model_id,
                                                                     model_version=device.manifest.model_version))
        encoded = interactions.suffix == ".npz"  # codes as they were scored, signal columns included
        if signals.active and not encoded:  # item-table rows and history as the device would have had them
            x = signals.replay(x, y, ts, ids)
        if encoded and device.manifest.item_vectors is not None:  # the rows' item vectors: from the item table
            if ids is None:
                raise ConfigError(f"{interactions}: this bundle takes item vectors from the item table; an encoded "
                                  "log needs an item_id array to look them up")
            signals.learn_vectors(ids)
        local.save_log(x, y, ts)
        if encoded:
            signals.rebuild()
        else:
            signals.save()
        device.setup(groups=groups_of(x, schema))
        device.privacy = _privacy(device.manifest.privacy, policy, sigma=noise_multiplier, clip=clip_norm)
        table = Table("round", "status", "base version", "examples", "loss", "ε spent", "bytes up")
        for _ in range(rounds):
            result = device.run_round()
            table.add_row(str(local.state.rounds_completed), result.status, str(result.base_version),
                          str(result.example_count), f"{result.loss:.4f}", f"{local.state.epsilon_spent:.3f}",
                          str(result.bytes_up))
            deadline = time.monotonic() + wait
            while rounds > 1 and time.monotonic() < deadline:  # the next round needs the next state
                if client.status(model_id)["state_version"] > result.base_version:
                    break
                time.sleep(0.5)
    console.print(table)
    console.print(f"device {local.state.device_id}: groups {local.state.groups}, store {store}")


@app.command()
def recommend(
    store: Annotated[Path, typer.Option(exists=True, file_okay=False, help="A device's local store folder.")],
    candidates: Annotated[Path, typer.Option(exists=True, dir_okay=False,
                                             help="CSV of items (item feature columns, optional item_id).")],
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="How many items to return.")] = 10,
    backend: Annotated[str, typer.Option(help="pte (ExecuTorch) or onnx (onnxruntime).")] = "pte",
    online: Annotated[bool, typer.Option(help="Refresh the shared state from the server first.")] = False,
) -> None:
    """Rank candidate items for the store's user with its private adapter and its groups' adapters."""
    import pandas as pd

    from edge.client import AggregatorClient
    from edge.device import Device
    from edge.items import ItemTableClient
    from edge.local_data import read_candidates, schema_of
    from edge.signals import DeviceSignals
    from edge.store import LocalStore

    local = LocalStore.open(store)
    log = local.load_log()
    if local.state.model_id is None or log is None:
        raise ConfigError(f"{store}: not a set-up device store (run `fedpa-edge run` first)")
    with AggregatorClient(local.state.server or "http://127.0.0.1", token=local.state.token) as client:
        device = Device(local, client, model_id=local.state.model_id, backend=backend)
        if online:
            device.sync_state()
        schema = schema_of(device.manifest)
        x, ids = read_candidates(candidates, schema, log[0][0])
        signals = DeviceSignals.open(local, schema, items=ItemTableClient(
            client, local.state.model_id, model_version=device.manifest.model_version))
        if signals.needs_items and "item_id" not in pd.read_csv(candidates, nrows=0).columns:
            raise ConfigError(f"{candidates}: this bundle ranks with item-table columns; the file needs an "
                              "item_id column (the server looks the rows up by id)")
        x = signals.fill(x, ids)
        top, logits = device.recommend(x, k=k, offline=not online)
    table = Table("rank", "item", "score")
    for rank, (i, logit) in enumerate(zip(top, logits, strict=True), start=1):
        prob = 0.5 * (1.0 + math.tanh(0.5 * float(logit)))  # σ(logit) without overflow at extreme logits
        table.add_row(str(rank), ids[int(i)], f"{prob:.4f}")
    console.print(table)
