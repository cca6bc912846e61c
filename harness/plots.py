"""Plots of a fleet run: validation and test GAUC/AUC per round against the FM-only baseline.

Usage: ``plot_rounds(report, "runs/demo/rounds.png", fm_only=student_test_metrics)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.fleet import FleetReport

__all__ = ["plot_rounds", "plot_sweep"]


def plot_rounds(report: FleetReport, path: str | Path, *, fm_only: Mapping[str, float] | None = None,
                title: str = "FedPA over HTTP") -> Path:
    """GAUC and AUC on val/test after every round (round 0 = before adaptation)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    rows = [{"round": 0, **report.initial}] + [r for r in report.rounds if "test" in r]
    rounds = [r["round"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True)
    for ax, metric in zip(axes, ("gauc", "auc"), strict=True):
        for split, style in (("val", "--"), ("test", "-")):
            ax.plot(rounds, [r[split][metric] for r in rows], style, marker="o", label=f"{split}")
        if fm_only is not None and metric in fm_only:
            ax.axhline(fm_only[metric], color="grey", linestyle=":", label="FM-only (test)")
        if report.best_round:  # chosen by val AUC (docs/design.md §3): marked on that curve, lined on both panels
            ax.axvline(report.best_round, color="tab:green", alpha=0.3, label="round chosen by val AUC")
            if metric == "auc":
                chosen = next(r for r in rows if r["round"] == report.best_round)
                ax.plot([report.best_round], [chosen["val"]["auc"]], "*", color="tab:green", markersize=14,
                        label="best val AUC of rounds ≥ 1")
        ax.set_xlabel("round")
        ax.set_xticks(rounds)
        ax.set_ylabel(metric.upper())
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_sweep(rows: list[Mapping[str, Any]], path: str | Path, *, baseline: float | None = None,
               fm_only: float | None = None, title: str = "LDP utility vs ε") -> Path:
    """Test GAUC (mean ± std over seeds) against ε on a log axis; rows need ``epsilon``, ``clip_norm``, ``gauc``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    pts = sorted(rows, key=lambda r: r["epsilon"])  # one line: at each ε the clip norm chosen on validation
    ax.errorbar([r["epsilon"] for r in pts], [r["gauc"] for r in pts], yerr=[r.get("gauc_std", 0.0) for r in pts],
                marker="o", capsize=3, label="LDP (C chosen on val)")
    for r in pts:
        ax.annotate(f"C={r['clip_norm']:g}", (r["epsilon"], r["gauc"]), textcoords="offset points", xytext=(4, -10),
                    fontsize=7)
    if baseline is not None:
        ax.axhline(baseline, color="black", linestyle="--", label="non-private")
        ax.axhspan(baseline - 0.005, baseline, color="black", alpha=0.08, label="target band (−0.005)")
    if fm_only is not None:
        ax.axhline(fm_only, color="grey", linestyle=":", label="FM-only")
    ax.set_xscale("log")
    ax.set_xlabel("ε per user over all rounds (δ = 1e-5)")
    ax.set_ylabel("test GAUC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (creating its folder) and free it: plots are made in long-running loops."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
