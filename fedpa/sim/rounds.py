"""One synchronous round (docs/design.md §3): download, local training, LDP, encoding, aggregation.

Clients are processed in chunks (``client_chunk``): each chunk downloads, trains, stores its
private tensors and hands its uploads to the server. With the weighted mean the server folds each
chunk into a :class:`~fedpa.aggregation.StreamingMean` and forgets it, so memory stays bounded at
any number of clients; robust rules (trimmed mean, median) need every upload at once and keep them.
Chunking changes nothing else: clients never see each other within a round.

Usage: ``report, loss, skipped = run_round(program, pop, train, part, config, local, round=r)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from fedpa.aggregation import AggregationReport
from fedpa.privacy import report_example_counts
from fedpa.schedule import LocalTraining
from fedpa.sim.engine import LocalResult, Population, local_train
from fedpa.sim.layout import ClientRows
from fedpa.sim.methods import Program
from fedpa.sim.server import aggregate_round, apply_ldp, streaming_mean
from fedpa.sim.wire import quantize

if TYPE_CHECKING:
    from fedpa.sim.runner import SimConfig

__all__ = ["run_round"]


def _uploads(program: Program, pop: Population, train: ClientRows, chunk: np.ndarray, config: SimConfig,
             local: LocalTraining, *, round: int) -> tuple[dict[str, Tensor], dict[str, np.ndarray], LocalResult]:
    """Train one chunk of clients; returns what they upload (decoded), their groups and training stats."""
    clients = torch.from_numpy(chunk)
    params = pop.params(clients, copy=True)
    result = local_train(program.forward, params, train, chunk, local, round=round, inplace=True,
                         max_rows=config.max_rows)
    trained = result.trained
    pop.store_private(clients, trained)
    values = pop.group_values(clients)
    # the shared delta, in place of the trained tensor (no copy): trained - what was downloaded
    deltas = {p: trained.pop(p).sub_(pop.shared_base(p, clients)) for p in pop.shared}
    if config.privacy is not None and deltas:
        deltas = apply_ldp(deltas, train.users[chunk], config.privacy, seed=config.seed, round=round)
    return {p: quantize(d, config.wire_dtype) for p, d in deltas.items()}, values, result


def run_round(program: Program, pop: Population, train: ClientRows, part: np.ndarray, config: SimConfig,
              local: LocalTraining, *, round: int) -> tuple[AggregationReport | None, Tensor, int]:
    """Run round ``round`` for participants ``part``; updates ``pop`` (private tensors and bank).

    Returns the aggregation report, each participant's mean training loss and the number of
    client steps dropped as non-finite.
    """
    streaming = config.aggregation.strategy == "mean" and not config.exact_aggregation
    accumulator = streaming_mean(program.spec, config.aggregation) if streaming and program.spec is not None else None
    kept: list[tuple[dict[str, Tensor], dict[str, np.ndarray], np.ndarray]] = []
    losses = []
    skipped = 0
    step = max(1, int(config.client_chunk))
    for i in range(0, part.size, step):
        chunk = part[i : i + step]
        deltas, values, stats = _uploads(program, pop, train, chunk, config, local, round=round)
        losses.append(stats.loss)
        skipped += int(stats.skipped.sum())
        if not deltas:
            continue
        if accumulator is not None:
            accumulator.add(deltas, values, report_example_counts(train.counts[chunk], config.example_counts))
        else:
            kept.append((deltas, values, report_example_counts(train.counts[chunk], config.example_counts)))
    loss = torch.cat(losses) if losses else torch.zeros(0, dtype=torch.float64)
    if program.spec is None:
        return None, loss, skipped
    if accumulator is not None:
        bank, report = accumulator.finish(pop.bank)
    else:
        deltas = {p: torch.cat([k[0][p] for k in kept]) for p in kept[0][0]} if kept else {}
        values = {a: np.concatenate([k[1][a] for k in kept]) for a in kept[0][1]} if kept else {}
        weights = np.concatenate([k[2] for k in kept]) if kept else np.zeros(0)
        bank, report = aggregate_round(pop.bank, program.spec, deltas, values, weights, config.aggregation,
                                       exact=config.exact_aggregation)
    pop.set_bank(bank)
    return report, loss, skipped
