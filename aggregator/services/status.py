"""A model's status for devices and operators: versions, the open round, reporters per group.

``reporters`` counts the pending updates of the open round (or async buffer) per ``"gate"`` and
per ``"attr=value"``, which is what an operator needs to see whether groups will reach
``min_reporters``.
"""

from __future__ import annotations

from sqlalchemy import func, select

from aggregator.db import Database
from aggregator.models import Model, Update
from aggregator.schemas import ModelStatus
from aggregator.services.catalog import Catalog
from aggregator.services.rounds import last_aggregation

__all__ = ["list_models", "model_status"]


def model_status(db: Database, catalog: Catalog, model_id: str) -> ModelStatus:
    with db.sessions() as session:
        info = catalog.current(session, model_id)
        model = session.execute(select(Model.state_version, Model.round).where(Model.id == info.pk)).one()
        by_status = dict(session.execute(
            select(Update.status, func.count()).where(Update.model_pk == info.pk,
                                                      Update.model_version == info.model_version)
            .group_by(Update.status)).all())
        pending_filter = [Update.model_pk == info.pk, Update.status == "pending",
                          Update.model_version == info.model_version]
        if info.config.mode == "sync":
            pending_filter.append(Update.round == model.round)
        groups = session.execute(select(Update.groups_key, func.count()).where(*pending_filter)
                                 .group_by(Update.groups_key)).all()
        last = last_aggregation(session, info.pk, info.model_version)
    reporters: dict[str, int] = {}
    pending = 0
    for key, count in groups:
        pending += count
        reporters["gate"] = reporters.get("gate", 0) + count
        for group in filter(None, key.split(",")):
            reporters[group] = reporters.get(group, 0) + count
    return ModelStatus(
        model_id=info.model_id, model_version=info.model_version, state_version=model.state_version,
        mode=info.config.mode, round=model.round, pending_updates=pending, reporters=reporters,
        last_aggregation=last, accepted_total=sum(by_status.values()),
        aggregated_total=by_status.get("aggregated", 0), config=info.config)


def list_models(db: Database) -> list[str]:
    with db.sessions() as session:
        return list(session.execute(select(Model.model_id).order_by(Model.model_id)).scalars())
