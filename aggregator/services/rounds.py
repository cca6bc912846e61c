"""Rounds: when a model's pending updates become a new shared state, exactly once.

Sync mode closes round ``r`` (trained on state ``r``) once ``round_size`` distinct devices reported or
``deadline_s`` passed since its first update; async mode (FedBuff-style) applies the buffer once
``buffer_size`` updates arrived (or the deadline passed), weighting each by
``(1 + staleness)^-staleness_exponent``. The maths is ``fedpa.aggregation.aggregate_bank`` — the
same function the simulation harness calls.

Exactly-once: ``aggregate_model`` runs in ONE transaction that takes the exclusive round lock
(waiting out in-flight sync uploads), locks the model row ``FOR NO KEY UPDATE``, re-checks that the
round is due, writes the new bank version, marks the updates it used ``aggregated`` by id and
bumps the version. Any number of workers may call it concurrently; a crash anywhere rolls the
whole step back and leaves the updates pending for the next try.

Safety (issue 16): the round's settings resolve to a norm bound, a device weight cap and a step
bound (``resolve_safety``), and ``fedpa.aggregation.check_step`` refuses a result that is not
finite or moves a tensor too far. A refused aggregation changes no state: its updates are marked
``refused`` (so the round does not retry them forever), the round stays open, an ``aggregations``
row with ``outcome = 'refused'`` records why, and the metric and status endpoint show it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.orm import Session

from aggregator.core.errors import ConflictError
from aggregator.db import Database
from aggregator.models import UNSCRUBBED, Aggregation, Model, Update
from aggregator.schemas import AggregationInfo
from aggregator.services.bank import load_bank, prune_bank, store_bank
from aggregator.services.catalog import Catalog, ModelInfo
from fedpa.aggregation import (
    ClientUpdate,
    UnsafeAggregationError,
    aggregate_bank,
    check_step,
    ldp_norm_bound,
    make_strategy,
)
from fedpa.payload import decode_tensors
from fedpa.wire import ErrorCode

if TYPE_CHECKING:
    from sqlalchemy import CursorResult

__all__ = ["Safety", "aggregate_model", "due_models", "last_aggregation", "resolve_safety", "scrub_payloads"]

log = logging.getLogger(__name__)
_ID_CHUNK = 500  # ids per UPDATE … WHERE id IN (…) statement


def _pending_filter(info: ModelInfo, round_: int) -> list[ColumnElement[bool]]:
    conds = [Update.model_pk == info.pk, Update.status == "pending", Update.model_version == info.model_version]
    if info.config.mode == "sync":
        conds.append(Update.round == round_)
    return conds


def _supersede_old(db: Database, info: ModelInfo) -> None:
    """Retire pending updates of an older model version.

    Publishing supersedes what is pending; an async upload racing with the publish can still
    commit one for the old version afterwards. It can never be aggregated, so retire it here.
    """
    with db.begin() as session:
        session.execute(update(Update).where(Update.model_pk == info.pk, Update.status == "pending",
                                             Update.model_version < info.model_version)
                        .values(status="superseded", tensors=None))


@dataclass(frozen=True)
class Safety:
    """The robust aggregation settings of one model version, with every "auto" resolved."""

    norm_bound: float | Literal["median"] | None
    max_step: float | None


def update_dim(info: ModelInfo) -> int:
    """Values in one device's update: the gate plus one adapter per grouping attribute."""
    return sum(t.numel for t in info.spec.for_groups(dict.fromkeys(info.spec.attributes, 0)))


def resolve_safety(info: ModelInfo) -> Safety:
    """``norm_bound="auto"``: from the manifest's LDP (C, σ), else the round's median update norm."""
    cfg, privacy = info.config, info.privacy
    bound: float | Literal["median"] | None
    if cfg.norm_bound == "auto":
        bound = ldp_norm_bound(clip_norm=privacy.clip_norm, noise_multiplier=privacy.noise_multiplier,
                               mechanism=privacy.mechanism, dim=update_dim(info)) or "median"
    else:
        bound = cfg.norm_bound
    if cfg.max_step == "auto":
        max_step = cfg.server_lr * bound if isinstance(bound, float) else None
    else:
        max_step = cfg.max_step
    return Safety(norm_bound=bound, max_step=max_step)


def _is_due(info: ModelInfo, count: int, devices: int, oldest: float | None, now: float) -> str | None:
    """The trigger that makes this model due, if any (sync rounds count distinct devices)."""
    if count == 0:
        return None
    if (devices if info.config.mode == "sync" else count) >= (
            info.config.round_size if info.config.mode == "sync" else info.config.buffer_size):
        return "size"
    deadline = info.config.deadline_s
    if deadline is not None and oldest is not None and oldest + deadline <= now:
        return "deadline"
    return None


def due_models(db: Database, catalog: Catalog, *, now: float) -> list[tuple[int, str]]:
    """(model pk, trigger) of every model whose round should close now; one cheap grouped query."""
    out: list[tuple[int, str]] = []
    outdated: list[ModelInfo] = []
    with db.sessions() as session:
        rows = session.execute(
            select(Update.model_pk, Update.model_version, Update.round, func.count(),
                   func.count(func.distinct(Update.device_pk)), func.min(Update.received_at))
            .where(Update.status == "pending")
            .group_by(Update.model_pk, Update.model_version, Update.round)).all()
        pending: dict[int, list[tuple[int, int, int, int, float]]] = {}
        for pk, version, round_, n, n_devices, first_at in rows:
            pending.setdefault(pk, []).append((version, round_, n, n_devices, first_at))
        for pk, groups in pending.items():
            try:
                info = catalog.by_pk(session, pk)
            except ConflictError as exc:  # published by an older server: its round waits for a re-publish
                if exc.code != ErrorCode.MODEL_FORMAT_OUTDATED:
                    raise
                log.warning("not aggregating model pk %d: %s", pk, exc)
                continue
            if any(v != info.model_version for v, *_ in groups):
                outdated.append(info)
            current = [g for g in groups if g[0] == info.model_version]
            count = sum(g[2] for g in current)
            devices = max((g[3] for g in current), default=0)  # sync: one round pending; async: counts updates
            oldest = min((g[4] for g in current), default=None)
            trigger = _is_due(info, count, devices, oldest, now)
            if trigger:
                out.append((pk, trigger))
    for info in outdated:  # after the read transaction: on SQLite it holds the write lock
        _supersede_old(db, info)
    return out


def scrub_payloads(db: Database, *, chunk: int = 100, pause_s: float = 0.005) -> int:
    """Drop the tensors of used (aggregated or superseded) updates; returns how many were dropped.

    Not inside the aggregation: dropping 1,000 18 KB values deletes their TOAST chunks, which
    roughly doubled the aggregation's transaction and, competing for the cores, the upload latency
    tail meanwhile. Here it is small transactions with short pauses, right after the aggregation
    commits; what a crash leaves behind is found by the next pass (``ix_updates_unscrubbed``).
    """
    dropped = 0
    while True:
        with db.begin() as session:
            ids = session.execute(select(Update.id).where(text(UNSCRUBBED)).order_by(Update.id)
                                  .limit(chunk)).scalars().all()
            if ids:
                session.execute(update(Update).where(Update.id.in_(ids)).values(tensors=None))
        dropped += len(ids)
        if len(ids) < chunk:
            return dropped
        time.sleep(pause_s)


def aggregate_model(db: Database, catalog: Catalog, model_pk: int, *, trigger: str, force: bool = False,
                    keep_versions: int = 5, now: float | None = None) -> AggregationInfo | None:
    """Close the model's open round if it is due (or ``force``); None when there was nothing to do.

    The used updates keep their tensors until ``scrub_payloads`` (the runtime calls it next).
    """
    start = time.perf_counter()
    with db.begin() as session:
        db.lock_round(session, model_pk, exclusive=True)
        # FOR NO KEY UPDATE: serialises aggregations of this model but, unlike FOR UPDATE, does not
        # block the FOR KEY SHARE lock that each concurrent upload's foreign key check takes on this
        # row (FOR UPDATE stalled every upload for the whole aggregation: the latency tail).
        model = session.execute(select(Model).where(Model.id == model_pk)
                                .with_for_update(key_share=True)).scalar_one()
        info = catalog.by_pk(session, model_pk)
        now = time.time() if now is None else now
        conds = _pending_filter(info, model.round)
        rows = session.execute(
            select(Update.id, Update.device_pk, Update.base_version, Update.example_count, Update.tensors,
                   Update.received_at).where(*conds).order_by(Update.id)).all()
        if not rows:
            return None
        if not force:
            trigger = _is_due(info, len(rows), len({r.device_pk for r in rows}),
                              min(r.received_at for r in rows), now) or ""
            if not trigger:
                return None  # another worker closed it, or it is not due after all
        cfg = info.config
        safety = resolve_safety(info)
        updates = [ClientUpdate(deltas=decode_tensors(r.tensors), weight=float(r.example_count),
                                staleness=max(0, model.state_version - r.base_version), client=r.device_pk)
                   for r in rows]
        bank = load_bank(session, info, model.state_version)
        new_bank, report = aggregate_bank(
            bank, updates, info.spec, strategy=make_strategy(cfg.strategy, trim_beta=cfg.trim_beta),
            server_lr=cfg.server_lr, min_reporters=cfg.min_reporters, weight_cap=cfg.weight_cap,
            weight_cap_median=cfg.weight_cap_median, norm_bound=safety.norm_bound,
            staleness_exponent=cfg.staleness_exponent if cfg.mode == "async" else 0.0)
        ids = [r.id for r in rows]
        try:
            check_step(bank, new_bank, max_step=safety.max_step)
        except UnsafeAggregationError as exc:
            return _refuse(session, info, model, ids, exc, trigger=trigger, start=start, now=now)
        new_version = model.state_version + 1
        store_bank(session, info, new_version, new_bank, now=now)
        values = {"status": "aggregated", "aggregated_into": new_version}
        marked = 0
        for i in range(0, len(ids), _ID_CHUNK):
            result = session.execute(update(Update).where(Update.id.in_(ids[i : i + _ID_CHUNK]),
                                                          Update.status == "pending").values(**values))
            marked += cast("CursorResult[Any]", result).rowcount  # an UPDATE's result is a cursor result
        if marked != len(ids):  # cannot happen while we hold the locks; refuse to double-count
            raise RuntimeError(f"marked {marked} of {len(ids)} updates aggregated; rolling back")
        closed_round = model.round
        model.state_version, model.round, model.updated_at = new_version, model.round + 1, now
        duration = time.perf_counter() - start
        report_json = json.dumps({"reporters": report.reporters, "skipped_groups": report.skipped_groups})
        session.add(Aggregation(model_pk=model_pk, model_version=info.model_version, round=closed_round,
                                from_state_version=new_version - 1, to_state_version=new_version,
                                updates=len(ids), report_json=report_json, trigger=trigger,
                                duration_s=duration, created_at=now))
        prune_bank(session, info, keep_from=new_version - keep_versions + 1)
    log.info("model %s: round %d closed (%s) with %d updates in %.1f ms → state version %d",
             info.model_id, closed_round, trigger, len(ids), 1000 * duration, new_version)
    return AggregationInfo(round=closed_round, state_version=new_version, updates=len(ids),
                           reporters=report.reporters, skipped_groups=report.skipped_groups,
                           trigger=trigger, duration_ms=1000 * duration, at=now)


def _refuse(session: Session, info: ModelInfo, model: Model, ids: list[int], exc: UnsafeAggregationError, *,
            trigger: str, start: float, now: float) -> AggregationInfo:
    """Record a refused aggregation: state unchanged, its updates ``refused``, the round stays open."""
    for i in range(0, len(ids), _ID_CHUNK):
        session.execute(update(Update).where(Update.id.in_(ids[i : i + _ID_CHUNK]), Update.status == "pending")
                        .values(status="refused"))
    duration = time.perf_counter() - start
    reason = f"{exc.reason}: {exc}"
    session.add(Aggregation(model_pk=info.pk, model_version=info.model_version, round=model.round,
                            from_state_version=model.state_version, to_state_version=model.state_version,
                            updates=len(ids), report_json=json.dumps({"reporters": {}, "skipped_groups": {}}),
                            trigger=trigger, outcome="refused", reason=reason, duration_s=duration, created_at=now))
    log.error("model %s: aggregation of round %d REFUSED (%s); the state stays at version %d and its %d updates "
              "are dropped", info.model_id, model.round, reason, model.state_version, len(ids))
    return AggregationInfo(round=model.round, state_version=model.state_version, updates=len(ids), reporters={},
                           skipped_groups={}, trigger=trigger, duration_ms=1000 * duration, at=now,
                           outcome="refused", reason=reason)


def last_aggregation(session: Session, model_pk: int, model_version: int, *, outcome: str | None = None
                     ) -> AggregationInfo | None:
    """The model version's latest aggregation (of this ``outcome``, if given)."""
    conds = [Aggregation.model_pk == model_pk, Aggregation.model_version == model_version]
    if outcome is not None:
        conds.append(Aggregation.outcome == outcome)
    row = session.execute(select(Aggregation).where(*conds).order_by(Aggregation.id.desc()).limit(1)
                          ).scalar_one_or_none()
    if row is None:
        return None
    report = json.loads(row.report_json)
    return AggregationInfo(round=row.round, state_version=row.to_state_version, updates=row.updates,
                           reporters=report["reporters"], skipped_groups=report["skipped_groups"],
                           trigger=row.trigger, duration_ms=1000 * row.duration_s, at=row.created_at,
                           outcome=row.outcome, reason=row.reason)
