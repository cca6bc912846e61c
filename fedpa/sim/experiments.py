"""The docs/design.md §8 results table: every method, tuned on validation, over several seeds.

Protocol (docs/simulation.md): for each seed the dataset is split and a teacher pre-trained and a
student distilled on the open users (cached per dataset and seed). On seed ``seeds[0]`` each
trainable method's settings are picked from a small grid by **validation** GAUC (test is never
looked at); those settings then run on every seed. The table reports test metrics at the best
validation round, mean ± std over seeds.

Usage: ``paths = run_experiments("kuaisar-r", "/data/kuaisar-r", ExperimentConfig(), Path("out"))``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedpa.errors import ConfigError
from fedpa.metrics import gauc_delta_ci
from fedpa.model import Backbone
from fedpa.sim.methods import METHODS, get_method
from fedpa.sim.runner import SimConfig, SimResult, simulate
from fedpa.sim.server import AggregationConfig

__all__ = [
    "DEFAULT_GRID",
    "TABLE_METHODS",
    "ExperimentConfig",
    "cached_student",
    "everyone",
    "load_scores",
    "paired_ci",
    "pick_inputs",
    "plot_curves",
    "plot_results_json",
    "run_experiments",
    "run_trial",
    "save_scores",
    "summarise",
    "table_from_json",
]

TABLE_METHODS: tuple[str, ...] = ("fm-only", "user-ctr", "local-only", "fedavg-full", "fedavg-lora",
                                  "global-private-lora", "fedpa-paper", "fedpa-zero-init", "fedpa")
_LRS = (0.1, 0.3, 1.0)
# Each trial: Method field overrides, plus "server_lr" for the server. Same lr grid for every
# trainable baseline; our variant additionally searches the server learning rate. (Rank 8, private
# user embeddings, batch 16/64 and single-attribute groups were tried on KuaiSAR-R/KuaiRand seed 0
# validation and moved val GAUC by < 0.003: see docs/simulation.md.)
DEFAULT_GRID: dict[str, list[dict[str, Any]]] = {
    **{m: [{"lr": lr} for lr in _LRS] for m in ("local-only", "fedavg-full", "fedavg-lora", "global-private-lora",
                                                "fedpa-paper", "fedpa-zero-init")},
    # + 5 local epochs (the device default, fedpa.schedule.LocalTraining): with 1 epoch at lr ≤ 0.3 the private
    # adapters barely train in 30 rounds; with 5 they learn within a few (docs/RESULTS.md §9)
    "fedpa": [{"lr": lr, "server_lr": s} for lr in _LRS for s in (1.0, 3.0)]
    + [{"lr": lr, "local_epochs": 5} for lr in (0.1, 0.3)],
}


@dataclass(frozen=True)
class ExperimentConfig:
    rounds: int = 30
    fraction: float = 1.0
    local_epochs: int = 1
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = TABLE_METHODS
    tune: bool = True
    grid: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: DEFAULT_GRID)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # passed to load_dataset
    features: str = "full"  # model inputs: base | full (fedpa.signals.select_kinds)
    without: tuple[str, ...] = ()  # input kinds switched off one at a time (ablations)
    # pick the input kinds on seed seeds[0]'s private validation GAUC of FM-only (one student per
    # candidate subset of the dataset's kinds); replaces ``without`` for every seed
    pick_inputs: bool = False
    refit: bool = False  # SimConfig.refit for every trainable run (tuning reads validation only: unaffected)

    def __post_init__(self) -> None:
        from fedpa.signals import select_kinds

        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.seeds:
            raise ConfigError(f"unknown methods {unknown} or no seeds (known: {sorted(METHODS)})")
        select_kinds(self.features, self.without)  # refuse a bad selection before any work
        if self.pick_inputs and self.features != "full":
            raise ConfigError("pick_inputs chooses among the full inputs' kinds: it needs features='full'")


def everyone(ds: Any) -> Any:
    """``ds`` with the private users' train and validation rows added to the open ones.

    Research only: what a central server holding every user's rows would train on — the reference
    the federated adapters are measured against (issue 14). Inputs are unchanged (vocabularies,
    bucket edges and item statistics still come from open users); private splits stay as they are.
    """
    from fedpa.data.dataset import Interactions

    def join(a: Interactions, b: Interactions) -> Interactions:
        rows = Interactions(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in ("user", "item", "x", "y", "ts")))
        return rows.select(np.lexsort((rows.ts, rows.user)))  # (user, ts) order like every split

    return dataclasses.replace(ds, open_train=join(ds.open_train, ds.private_train),
                               open_val=join(ds.open_val, ds.private_val))


def cached_student(ds: Any, *, seed: int, cache_dir: Path, rows: str = "open") -> Backbone:
    """The distilled student for (dataset, seed): trained once (teacher → student), then loaded.

    ``rows="everyone"`` trains teacher and student on open + private users' rows (:func:`everyone`).
    """
    from fedpa.train import TrainConfig, default_student_config, distill, load_checkpoint, pretrain, save_checkpoint

    if rows not in ("open", "everyone"):
        raise ConfigError(f"rows must be 'open' or 'everyone', got {rows!r}")
    tag = "-".join(ds.schema.signals.get("kinds", [])) or "base"
    if ds.schema.signals.get("stats_from", "open") != "open":
        tag += f"-stats-{ds.schema.signals['stats_from']}"
    if rows == "everyone":
        tag += "-everyone"
    path = Path(cache_dir) / f"{ds.name}-seed{seed}-{tag}-student.pt"
    recipe = dataclasses.asdict(TrainConfig())
    if path.is_file():
        ckpt = load_checkpoint(path)
        # a student cached before an architecture or training-recipe change is retrained
        if (ckpt.schema.to_dict() == ds.schema.to_dict() and ckpt.model.config == default_student_config(ds.schema)
                and ckpt.metrics.get("recipe") == recipe):
            return ckpt.model
    if rows == "everyone":
        ds = everyone(ds)
    teacher = pretrain(ds, seed=seed)
    save_checkpoint(path.with_name(f"{ds.name}-seed{seed}-{tag}-teacher.pt"), teacher.model, ds.schema,
                    kind="teacher", metrics=teacher.metrics)
    student = distill(ds, teacher.model, seed=seed)
    save_checkpoint(path, student.model, ds.schema, kind="student",
                    metrics={**student.metrics, "teacher": teacher.metrics, "recipe": recipe})
    return student.model


def pick_inputs(dataset: str, data_dir: str | Path | None, config: ExperimentConfig, cache_dir: Path, *,
                say: Callable[[str], None] = lambda _m: None) -> tuple[tuple[str, ...], dict[str, float]]:
    """The ``without`` set whose FM-only student scores the best **validation** GAUC on seed ``seeds[0]``.

    Why: the input kinds do not add up (issue 14: on KuaiSAR-R all kinds together score below
    history alone), so which to ship is a per-dataset choice — made on validation, never on test.
    Candidates: every non-empty subset of the kinds the dataset supports. Returns the pick and
    every candidate's validation GAUC (keyed by its kinds).
    """
    from itertools import combinations

    from fedpa.data import load_dataset
    from fedpa.signals import SIGNAL_KINDS

    seed = config.seeds[0]
    scores: dict[str, float] = {}
    best: tuple[float, tuple[str, ...]] | None = None
    for n in range(len(SIGNAL_KINDS), 0, -1):
        for kinds in combinations(SIGNAL_KINDS, n):
            without = tuple(k for k in SIGNAL_KINDS if k not in kinds)
            ds = load_dataset(dataset, data_dir, seed=seed, features="full", without=without,
                              **config.dataset_options)
            if tuple(ds.schema.signals.get("kinds", ())) != kinds:
                continue  # a kind this dataset cannot provide: the same model as a smaller subset
            say(f"picking inputs: {'+'.join(kinds)}")
            student = cached_student(ds, seed=seed, cache_dir=cache_dir)
            val = simulate(ds, student, get_method("fm-only")).val["gauc"]
            scores["+".join(kinds)] = val
            if best is None or np.nan_to_num(val, nan=-1.0) > best[0]:
                best = (float(np.nan_to_num(val, nan=-1.0)), without)
    if best is None:
        raise ConfigError(f"{dataset}: no input kind can be computed, nothing to pick from")
    return best[1], scores


def run_trial(ds: Any, student: Backbone, method: str, trial: dict[str, Any], config: ExperimentConfig, *,
              seed: int) -> SimResult:
    """One simulation of ``method`` with a trial's overrides (``server_lr`` goes to the server,
    ``local_epochs`` to the rounds; both default to the config's)."""
    overrides = {k: v for k, v in trial.items() if k not in ("server_lr", "local_epochs")}
    epochs = int(trial.get("local_epochs", config.local_epochs))
    sim = SimConfig(rounds=config.rounds, fraction=config.fraction, local_epochs=epochs, seed=seed,
                    aggregation=AggregationConfig(server_lr=float(trial.get("server_lr", 1.0))), refit=config.refit)
    return simulate(ds, student, get_method(method, **overrides), sim)


def _tune(ds: Any, student: Backbone, method: str, config: ExperimentConfig, seed: int,
          say: Callable[[str], None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    grid = config.grid.get(method, [])
    if METHODS[method].kind == "static" or not config.tune or not grid:
        return {}, []
    trials: list[dict[str, Any]] = []
    for trial in grid:
        say(f"tuning {method} {trial}")
        # tuning reads validation only, which refit does not change: skip its second run
        r = run_trial(ds, student, method, trial, dataclasses.replace(config, refit=False), seed=seed)
        trials.append({"trial": trial, "val_gauc": r.val["gauc"], "val_auc": r.val["auc"], "best_round": r.best_round})
    best = max(trials, key=lambda t: float(np.nan_to_num(t["val_gauc"], nan=-1.0)))
    chosen: dict[str, Any] = best["trial"]
    return chosen, trials


def _stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    return {"mean": float(np.mean(a)), "std": float(np.std(a, ddof=1)) if a.size > 1 else 0.0}


def _at_best(result: SimResult, metric: str) -> dict[str, float]:
    rounds = result.curve[1:] or result.curve
    best = max(rounds, key=lambda p: (float(np.nan_to_num(p["val"][metric], nan=-1.0)), -p["round"]))
    test: dict[str, float] = best["test"]
    return test


def summarise(results: dict[str, list[SimResult]]) -> dict[str, dict[str, Any]]:
    """Per method: mean/std over seeds of test metrics, costs and time."""
    out = {}
    for method, runs in results.items():
        out[method] = {
            **{f"test_{k}": _stats([r.test[k] for r in runs]) for k in ("auc", "gauc", "logloss", "precision")},
            **{f"val_{k}": _stats([r.val[k] for r in runs]) for k in ("auc", "gauc")},
            "best_round": _stats([r.best_round for r in runs]),
            # the same runs read at the best *validation GAUC* round instead of validation AUC
            "test_gauc_at_best_val_gauc": _stats([_at_best(r, "gauc")["gauc"] for r in runs]),
            "seconds_per_round": _stats([r.seconds_per_round for r in runs]),
            "upload_bytes": _stats([r.upload_bytes_per_client_round for r in runs]),
            "download_bytes": _stats([r.download_bytes_per_client_round for r in runs]),
        }
        if "fm-only" in results and len(results["fm-only"]) == len(runs):
            # paired by seed (same split, same student): removes the between-seed spread of the data
            out[method]["test_gauc_minus_fm_only"] = _stats(
                [r.test["gauc"] - f.test["gauc"] for r, f in zip(runs, results["fm-only"], strict=True)])
            ci = paired_ci(runs, results["fm-only"])
            if ci is not None:
                out[method]["test_gauc_minus_fm_only_ci"] = ci
    return out


def paired_ci(runs: Sequence[SimResult], reference: Sequence[SimResult]) -> dict[str, float] | None:
    """Mean over seeds of GAUC(run) − GAUC(reference) on the same test rows, with its 95 % user-bootstrap CI.

    ``None`` when the runs carry no test scores (e.g. re-read from an old JSON without its scores file).
    """
    pairs = []
    for r, f in zip(runs, reference, strict=True):
        if (r.test_scores is None or f.test_scores is None or r.test_user is None or r.test_y is None
                or f.test_user is None or f.test_y is None):
            return None
        if not (np.array_equal(r.test_user, f.test_user) and np.array_equal(r.test_y, f.test_y)):
            raise ConfigError(f"{r.method} vs {f.method}: test rows differ (not the same dataset and seed)")
        pairs.append((r.test_user, r.test_y, r.test_scores, f.test_scores))
    ci = gauc_delta_ci(pairs)
    return {"delta": ci.delta, "low": ci.low, "high": ci.high}


def save_scores(results: dict[str, list[SimResult]], path: Path) -> Path:
    """Every run's best-round test scores (and the rows' users and labels) as one ``.npz``."""
    arrays: dict[str, np.ndarray] = {}
    for method, runs in results.items():
        for k, r in enumerate(runs):
            if r.test_scores is not None and r.test_user is not None and r.test_y is not None:
                arrays[f"{method}/{k}/scores"] = r.test_scores
                arrays[f"{k}/user"], arrays[f"{k}/y"] = r.test_user, r.test_y
    np.savez_compressed(path, allow_pickle=False, **arrays)
    return path


def load_scores(results: dict[str, list[SimResult]], path: Path) -> None:
    """Attach the scores written by :func:`save_scores` to results re-read from JSON (in place)."""
    if not Path(path).is_file():
        return
    with np.load(path) as data:
        for method, runs in results.items():
            for k, r in enumerate(runs):
                if f"{method}/{k}/scores" in data:
                    r.test_scores = data[f"{method}/{k}/scores"]
                    r.test_user, r.test_y = data[f"{k}/user"], data[f"{k}/y"]


def _markdown(dataset: str, summary: dict[str, dict[str, Any]], tuned: dict[str, dict[str, Any]],
              config: ExperimentConfig) -> str:
    def pm(s: dict[str, float], digits: int = 4) -> str:
        return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"

    def ci(s: dict[str, Any]) -> str:
        c = s.get("test_gauc_minus_fm_only_ci")
        return "—" if c is None else f"[{c['low']:+.4f}, {c['high']:+.4f}]"

    features = config.features + (f" without {','.join(config.without)}" if config.without else "")
    lines = [f"### {dataset}: {config.rounds} rounds, fraction {config.fraction}, {config.local_epochs} local "
             f"epoch(s), seeds {list(config.seeds)}, features {features}", "",
             "| method | test GAUC | Δ GAUC vs fm-only (paired) | Δ 95 % CI (user bootstrap) | test AUC | logloss | "
             "best round | test GAUC (GAUC-selected) | upload B/client/round | download B/client/round | s/round | "
             "tuned on val |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, s in summary.items():
        delta = pm(s["test_gauc_minus_fm_only"]) if "test_gauc_minus_fm_only" in s else "—"
        lines.append(f"| {method} | {pm(s['test_gauc'])} | {delta} | {ci(s)} | {pm(s['test_auc'])} | "
                     f"{pm(s['test_logloss'])} | "
                     f"{s['best_round']['mean']:.1f} | {pm(s['test_gauc_at_best_val_gauc'])} | "
                     f"{s['upload_bytes']['mean']:,.0f} | "
                     f"{s['download_bytes']['mean']:,.0f} | {s['seconds_per_round']['mean']:.3f} | "
                     f"{json.dumps(tuned.get(method, {}))} |")
    return "\n".join(lines) + "\n"


def plot_curves(dataset: str, curves: dict[str, list[list[dict[str, Any]]]], path: Path) -> None:
    """Val GAUC, test GAUC and test pooled AUC per round, mean over seeds (``curves[m]``: one per seed).

    ``user-ctr`` is left out of the GAUC panels (0.5 by construction, it would flatten the axis).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("val", "gauc", "val GAUC"), ("test", "gauc", "test GAUC"), ("test", "auc", "test pooled AUC"))
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    colors = plt.get_cmap("tab10")
    for ax, (split, metric, title) in zip(axes, panels, strict=True):
        for i, (method, runs) in enumerate(curves.items()):
            if method == "user-ctr" and metric == "gauc":
                continue
            values = np.array([[p[split][metric] for p in run] for run in runs], np.float64)
            if values.shape[1] == 1:  # a static method: a flat reference line
                ax.axhline(values.mean(), linestyle="--", linewidth=1.2, color=colors(i % 10), label=method)
            else:
                ax.plot(np.arange(values.shape[1]), values.mean(0), color=colors(i % 10), label=method,
                        linewidth=2.2 if method == "fedpa" else 1.3)
        ax.set_title(f"{dataset}: {title} per round (mean of {len(next(iter(curves.values())))} seeds)")
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("GAUC")
    axes[2].set_ylabel("AUC")
    axes[2].legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_from_json(results_json: Path) -> str:
    """Re-render the markdown table from a ``*-results.json`` (e.g. after adding a column)."""
    data = json.loads(Path(results_json).read_text())
    results = {m: [SimResult(**r) for r in runs] for m, runs in data["runs"].items()}
    load_scores(results, Path(results_json).with_name(Path(results_json).name.replace("-results.json",
                                                                                       "-scores.npz")))
    c = data["config"]
    config = ExperimentConfig(rounds=c["rounds"], fraction=c["fraction"], local_epochs=c["local_epochs"],
                              seeds=tuple(c["seeds"]), methods=tuple(c["methods"]),
                              features=c.get("features", "base"), without=tuple(c.get("without", ())))
    name = data["dataset"] if data["dataset"] != "csv" else Path(results_json).stem
    return _markdown(name, summarise(results), data["tuned"], config)


def plot_results_json(results_json: Path, path: Path | None = None) -> Path:
    """Redraw the figure from a ``*-results.json`` written by :func:`run_experiments`."""
    data = json.loads(Path(results_json).read_text())
    path = path or Path(results_json).with_name(Path(results_json).name.replace("-results.json", "-gauc.png"))
    curves = {m: [r["curve"] for r in runs] for m, runs in data["runs"].items()}
    plot_curves(data["dataset"] if data["dataset"] != "csv" else Path(results_json).stem, curves, path)
    return path


def run_experiments(dataset: str, data_dir: str | Path | None, config: ExperimentConfig, out_dir: Path, *,
                    progress: Callable[[str], None] | None = None) -> dict[str, str]:
    """Run the table; writes ``<dataset>-table.md``, ``<dataset>-results.json``, ``<dataset>-gauc.png``."""
    from fedpa.data import load_dataset

    say = progress or (lambda _m: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[SimResult]] = {m: [] for m in config.methods}
    tuned: dict[str, dict[str, Any]] = {}
    tuning: dict[str, list[dict[str, Any]]] = {}
    start = time.perf_counter()
    without, picked = config.without, None
    if config.pick_inputs:
        without, picked = pick_inputs(dataset, data_dir, config, out_dir / "students", say=say)
        config = dataclasses.replace(config, without=without)
    for seed in config.seeds:
        say(f"seed {seed}: loading and distilling (cached)")
        ds = load_dataset(dataset, data_dir, seed=seed, features=config.features, without=without,
                          **config.dataset_options)
        student = cached_student(ds, seed=seed, cache_dir=out_dir / "students")
        for method in config.methods:
            if seed == config.seeds[0]:
                tuned[method], tuning[method] = _tune(ds, student, method, config, seed, say)
            say(f"seed {seed}: {method} {tuned[method]}")
            results[method].append(run_trial(ds, student, method, tuned[method], config, seed=seed))
    summary = summarise(results)
    name = Path(data_dir).name if dataset == "csv" and data_dir is not None else dataset  # csv: the folder's name
    paths = {"markdown": out_dir / f"{name}-table.md", "json": out_dir / f"{name}-results.json",
             "png": out_dir / f"{name}-gauc.png", "scores": save_scores(results, out_dir / f"{name}-scores.npz")}
    paths["markdown"].write_text(_markdown(name, summary, tuned, config))
    paths["json"].write_text(json.dumps({
        "dataset": dataset, "data_dir": str(data_dir) if data_dir else None, "config": asdict(config),
        "tuned": tuned, "tuning": tuning, "summary": summary,
        "picked_inputs_val_gauc": picked, "wall_seconds": time.perf_counter() - start,
        "runs": {m: [r.to_dict() for r in rs] for m, rs in results.items()},
    }, indent=1, default=float))
    plot_curves(name, {m: [r.curve for r in rs] for m, rs in results.items()}, paths["png"])
    return {k: str(v) for k, v in paths.items()}
