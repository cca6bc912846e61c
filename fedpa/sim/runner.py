"""Synchronous federated rounds (docs/design.md §3) over the private users of a dataset, with evaluation.

A round: the server picks a fraction of the clients (seeded), each downloads the gate and its
groups' adapters, trains them with its private adapter for E local epochs on its own train rows
(batched over clients by ``fedpa.sim.engine``), optionally clips and noises its shared delta (LDP),
encodes it for the wire; the server aggregates with ``fedpa.aggregation.aggregate_bank``. After
every round all private users are scored on val and test with their current private adapter and
the current bank; the reported test metrics are those of the round with the best validation
metric (``select``, pooled AUC by default as in docs/design.md §3; GAUC is the headline metric).

Usage: ``result = simulate(ds, student, get_method("fedpa"), SimConfig(rounds=30, seed=0))``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from fedpa.errors import ConfigError
from fedpa.metrics import evaluate
from fedpa.model import Backbone
from fedpa.privacy import EXAMPLE_COUNT_REPORT, CountReport, PrivacyConfig, epsilon_after
from fedpa.schedule import LocalTraining
from fedpa.sim.engine import Population, predict
from fedpa.sim.layout import ClientRows, segment_length, segments
from fedpa.sim.methods import Method, Program, build_program
from fedpa.sim.rounds import run_round
from fedpa.sim.server import AggregationConfig, wire_names
from fedpa.sim.wire import WireDtype, encode_update

if TYPE_CHECKING:
    from fedpa.data import Dataset

__all__ = ["SimConfig", "SimResult", "select_clients", "simulate"]


@dataclass(frozen=True)
class SimConfig:
    """Everything about a run except the method (whose ``lr``/``batch_size`` drive local SGD).

    Local SGD is the device's :class:`~fedpa.schedule.LocalTraining` with two explicit overrides:
    the method's tuned ``lr`` and ``local_epochs`` here.
    """

    rounds: int = 30
    fraction: float = 1.0  # of the private users with train rows, per round
    local_epochs: int = 1  # overrides LocalTraining.epochs (5, the device's): the protocol of docs/simulation.md
    seed: int = 0
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    privacy: PrivacyConfig | None = None
    wire_dtype: WireDtype = "fp32"
    packed: bool = False  # one concatenated tensor per upload (see fedpa.sim.wire)
    select: Literal["auc", "gauc"] = "auc"
    # score test with a second run of the picked number of rounds over train + validation rows: at
    # test time a device has seen its validation-period rows too (the history features of a test
    # row already count them), so adapters trained on train rows only score test with stale data
    refit: bool = False
    exact_aggregation: bool = False  # one ClientUpdate per client even for the weighted mean
    # the aggregation weight each upload declares: what a device sends (fedpa.privacy.report_example_count)
    example_counts: CountReport = EXAMPLE_COUNT_REPORT
    max_rows: int = 1 << 18  # rows per batched forward (memory bound only)
    client_chunk: int = 32768  # clients trained and uploaded together (memory bound only)

    def __post_init__(self) -> None:
        if self.rounds < 0 or not 0 < self.fraction <= 1 or self.local_epochs < 0:
            raise ConfigError(f"need rounds ≥ 0, 0 < fraction ≤ 1, local_epochs ≥ 0; got {self}")
        if self.select not in ("auc", "gauc"):
            raise ConfigError(f"select must be 'auc' or 'gauc', got {self.select!r}")


@dataclass
class SimResult:
    """What a run produced; ``to_dict()`` is the CLI's JSON."""

    method: str
    dataset: str
    rounds: int
    best_round: int
    test: dict[str, float]
    val: dict[str, float]
    seconds_per_round: float
    upload_bytes_per_client_round: float
    download_bytes_per_client_round: float
    curve: list[dict[str, Any]]
    info: dict[str, Any]
    # test rows at the best round (not in the JSON): what paired bootstrap CIs are computed from;
    # rows are in the same order for every method on the same dataset and seed
    test_scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    test_user: np.ndarray | None = field(default=None, repr=False, compare=False)
    test_y: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("test_scores", "test_user", "test_y"):
            d.pop(key)
        return d


def select_clients(eligible: np.ndarray, fraction: float, *, seed: int, round: int) -> np.ndarray:
    """The round's participants: ``round(fraction·n)`` (≥ 1) of ``eligible``, seeded by (seed, round)."""
    if fraction >= 1.0:
        return eligible
    k = max(1, math.floor(fraction * eligible.size + 0.5))  # round half up, never zero
    rng = np.random.default_rng([seed, round, 0x5E1EC7])
    return np.sort(rng.choice(eligible, size=k, replace=False))



def _metrics(rows: ClientRows, logits: np.ndarray) -> dict[str, float]:
    return evaluate(rows.user, rows.y.numpy(), logits)


def _bytes_per_client(program: Program, values: dict[str, np.ndarray], clients: np.ndarray, dtype: WireDtype,
                      packed: bool) -> tuple[float, float]:
    """Mean (upload, download) payload bytes of these clients: exact encodings of their tensors."""
    spec = program.spec
    if spec is None or clients.size == 0:
        return 0.0, 0.0
    names = wire_names(spec)
    by_name = spec.by_name()
    keys = np.stack([values[a][clients] for a in spec.attributes] or [np.zeros(clients.size, np.int64)], 1)
    combos, counts = np.unique(keys, axis=0, return_counts=True)
    up = down = 0.0
    for combo, count in zip(combos, counts, strict=True):
        groups = dict(zip(spec.attributes, (int(v) for v in combo), strict=False))
        tensors = {}
        for p, a in {t.param: t.attribute for t in spec.tensors}.items():
            name = names[(p, None if a is None else groups[a])]
            tensors[name] = np.zeros(by_name[name].shape, np.float32)
        up += count * len(encode_update(tensors, dtype, packed=packed))
        down += count * len(encode_update(tensors, "fp32", packed=False))
    return up / clients.size, down / clients.size


def _static(method: Method, student: Backbone, val: ClientRows, test: ClientRows,
            train: ClientRows) -> tuple[np.ndarray, np.ndarray]:
    """Val and test logits of a method that does not train."""
    if method.name == "user-ctr":
        owner = np.repeat(np.arange(len(train)), train.counts)
        clicks = np.bincount(owner, weights=train.y.numpy(), minlength=len(train))
        rate = np.clip(clicks / np.maximum(train.counts, 1), 1e-4, 1 - 1e-4)
        logit = np.log(rate / (1 - rate))
        return np.repeat(logit, val.counts), np.repeat(logit, test.counts)
    with torch.no_grad():
        return student(val.x).numpy(), student(test.x).numpy()


def simulate(ds: Dataset, student: Backbone, method: Method, config: SimConfig | None = None, *,
             progress: Callable[[dict[str, Any]], None] | None = None) -> SimResult:
    """Run ``config.rounds`` synchronous rounds of ``method`` on ``ds``'s private users."""
    config = config or SimConfig()
    users = np.asarray(ds.private_users, np.int64)
    train, val, test = (ClientRows.from_split(s, users) for s in (ds.private_train, ds.private_val, ds.private_test))
    info: dict[str, Any] = {"clients": int(users.size), "train_rows": int(train.x.shape[0]),
                            "method_config": asdict(method), "config": asdict(config)}
    if method.kind == "static":
        start = time.perf_counter()
        v_logits, t_logits = _static(method, student, val, test, train)
        v, t = _metrics(val, v_logits), _metrics(test, t_logits)
        curve: list[dict[str, Any]] = [{"round": 0, "val": v, "test": t, "seconds": time.perf_counter() - start}]
        return SimResult(method.name, ds.name, 0, 0, t, v, 0.0, 0.0, 0.0, curve, info,
                         test_scores=t_logits, test_user=test.user, test_y=test.y.numpy())

    program = build_program(method, student, ds.schema, ds.user_groups[users], seed=config.seed)
    pop = Population(program.private_init, users.size, program.spec, program.bank, program.group_values)
    # the device's LocalTraining with the simulation's explicit overrides (tuned lr, its epochs)
    local = LocalTraining(lr=method.lr, batch_size=method.batch_size, epochs=config.local_epochs, seed=config.seed)
    scored, is_val = val.concat(test)  # one batched pass scores both splits
    segs = segments(scored, length=segment_length(scored.counts))
    split_rows = {"val": is_val, "test": ~is_val}

    test_logits: list[np.ndarray] = []  # per round, to keep the best round's scores

    def evaluate_all() -> dict[str, dict[str, float]]:
        logits = predict(program.forward, pop.params, scored, segs, max_rows=config.max_rows)
        # a client whose adapter blew up (huge but finite tensors) can score NaN: count those rows
        # and score them 0 (probability ½) so one broken device does not turn the metrics into NaN
        bad = ~np.isfinite(logits)
        logits[bad] = 0.0
        y = scored.y.numpy()
        out = {name: evaluate(scored.user[m], y[m], logits[m]) for name, m in split_rows.items()}
        for name, m in split_rows.items():
            out[name]["nonfinite"] = int(bad[m].sum())
        test_logits.append(logits[split_rows["test"]].astype(np.float32))
        return out

    first = evaluate_all()
    curve = [{"round": 0, **first, "seconds": 0.0}]
    eligible = np.flatnonzero(train.counts > 0)
    participations = np.zeros(users.size, np.int64)
    up_total = down_total = 0.0
    for r in range(config.rounds):
        start = time.perf_counter()
        part = select_clients(eligible, config.fraction, seed=config.seed, round=r)
        report, loss, skipped = run_round(program, pop, train, part, config, local, round=r)
        trained_at = time.perf_counter()
        participations[part] += 1
        up, down = _bytes_per_client(program, program.group_values, part, config.wire_dtype, config.packed)
        up_total, down_total = up_total + up, down_total + down
        metrics = evaluate_all()
        done = time.perf_counter()
        finite = loss.numpy()[np.isfinite(loss.numpy())]
        point: dict[str, Any] = {
            "round": r + 1, **metrics, "train_loss": float(finite.mean()) if finite.size else float("nan"),
            "clients": int(part.size), "seconds": done - start, "round_seconds": trained_at - start,
            "eval_seconds": done - trained_at}
        if skipped:
            point["skipped_steps"] = skipped  # client steps dropped as non-finite (divergence)
        if report is not None and report.skipped_groups:
            point["skipped_groups"] = dict(report.skipped_groups)
        curve.append(point)
        if progress is not None:
            progress(point)

    candidates = curve[1:] or curve
    best = max(candidates, key=lambda p: (np.nan_to_num(p["val"][config.select], nan=-1.0), -p["round"]))
    rounds = max(config.rounds, 1)
    if config.privacy is not None:
        info["epsilon"] = epsilon_after(int(participations.max(initial=0)), config.privacy)
        info["delta"] = config.privacy.delta
    info["private_floats_per_client"] = program.private_floats
    info["shared_floats_per_client"] = _shared_floats(program)
    test_mask = split_rows["test"]
    best_test, best_scores = best["test"], test_logits[best["round"]]
    if config.refit and best["round"] > 0:
        best_scores = _refit_test_logits(ds, student, method, config, local, users, train.concat(val)[0], test,
                                         rounds=best["round"])
        best_test = _metrics(test, best_scores)
        info["refit"] = {"rounds": best["round"], "test_without_refit": best["test"]}
    return SimResult(method.name, ds.name, config.rounds, best["round"], best_test, best["val"],
                     float(np.mean([p["seconds"] for p in curve[1:]])) if config.rounds else 0.0,
                     up_total / rounds, down_total / rounds, curve, info,
                     test_scores=best_scores, test_user=scored.user[test_mask],
                     test_y=scored.y.numpy()[test_mask])


def _refit_test_logits(ds: Dataset, student: Backbone, method: Method, config: SimConfig, local: LocalTraining,
                       users: np.ndarray, seen: ClientRows, test: ClientRows, *, rounds: int) -> np.ndarray:
    """Test logits after ``rounds`` fresh rounds (same seed, same schedule) over ``seen`` = train + val rows.

    The number of rounds was picked on validation; this run never looks at validation metrics,
    and its privacy cost is that of ``rounds`` ≤ ``config.rounds`` participations.
    """
    program = build_program(method, student, ds.schema, ds.user_groups[users], seed=config.seed)
    pop = Population(program.private_init, users.size, program.spec, program.bank, program.group_values)
    eligible = np.flatnonzero(seen.counts > 0)
    for r in range(rounds):
        run_round(program, pop, seen, select_clients(eligible, config.fraction, seed=config.seed, round=r),
                  config, local, round=r)
    logits = predict(program.forward, pop.params, test, segments(test, length=segment_length(test.counts)),
                     max_rows=config.max_rows)
    logits[~np.isfinite(logits)] = 0.0  # as evaluate_all: a blown-up client scores ½, not NaN
    return logits.astype(np.float32)


def _shared_floats(program: Program) -> int:
    """Floats one client uploads per round: the gate plus one adapter per grouping attribute."""
    if program.spec is None:
        return 0
    sizes = {t.param: t.numel for t in program.spec.tensors}
    return int(sum(sizes.values()))

