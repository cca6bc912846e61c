"""``fedpa privacy``: the accountant every client uses, from the command line.

Usage: ``fedpa privacy epsilon --noise-multiplier 7 --clip-norm 0.1 --rounds 30 --delta 1e-5``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

__all__ = ["privacy_app"]

privacy_app = typer.Typer(help="Privacy accounting (replacement adjacency, dp-accounting).", no_args_is_help=True)


@privacy_app.command("epsilon")
def epsilon(
    noise_multiplier: Annotated[float, typer.Option(help="σ: noise std in units of the clip norm C.")],
    rounds: Annotated[int, typer.Option(min=0, help="Uploads the user makes with these settings.")],
    clip_norm: Annotated[float, typer.Option(help="C (recorded; ε does not depend on it).")] = 1.0,
    delta: Annotated[float, typer.Option(help="δ of (ε, δ)-DP.")] = 1e-5,
    mechanism: Annotated[str, typer.Option(help="gaussian or laplace.")] = "gaussian",
) -> None:
    """Print one user's ε as JSON: replacement adjacency (the LDP one), add/remove beside it, labelled."""
    from fedpa.errors import ConfigError
    from fedpa.privacy import Mechanism, Upload, epsilon_of

    accounted: tuple[Mechanism, ...] = ("gaussian", "laplace")
    kind = next((m for m in accounted if m == mechanism), None)
    if kind is None:
        raise ConfigError(f"--mechanism must be gaussian or laplace, got {mechanism!r}")
    if not clip_norm > 0:
        raise ConfigError(f"--clip-norm must be > 0, got {clip_norm}")
    uploads = [Upload(kind, noise_multiplier, clip_norm)] * rounds
    out = {
        "epsilon": epsilon_of(uploads, delta=delta),
        "adjacency": "replacement",
        "epsilon_add_remove": epsilon_of(uploads, delta=delta, adjacency="add_remove"),
        "delta": delta, "noise_multiplier": noise_multiplier, "clip_norm": clip_norm, "rounds": rounds,
        "mechanism": mechanism, "accountant": "dp-accounting " + ("RDP" if mechanism == "gaussian" else "PLD"),
    }
    typer.echo(json.dumps(out))
