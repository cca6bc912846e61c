"""A model's status for devices and operators: versions, the open round, reporters per group.

``reporters`` counts the distinct devices with pending updates in the open round (or async buffer)
per ``"gate"`` and per ``"attr=value"``, which is what an operator needs to see whether groups will
reach ``min_reporters``. Devices get ``device_status``: versions and round only — per-group counts
would tell one device how many others share a group value.
"""

from __future__ import annotations

from sqlalchemy import func, select

from aggregator.db import Database
from aggregator.models import Model, Update
from aggregator.schemas import DeviceStatus, ModelStatus
from aggregator.services.catalog import Catalog
from aggregator.services.rounds import last_aggregation

__all__ = ["device_status", "list_models", "model_status"]


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
        pairs = session.execute(select(Update.groups_key, Update.device_pk, func.count()).where(*pending_filter)
                                .group_by(Update.groups_key, Update.device_pk)).all()
        last = last_aggregation(session, info.pk, info.model_version)
        refused = last_aggregation(session, info.pk, info.model_version, outcome="refused")
    devices_of: dict[str, set[int]] = {}
    pending = 0
    for key, device_pk, count in pairs:
        pending += count
        for group in ["gate", *filter(None, key.split(","))]:
            devices_of.setdefault(group, set()).add(device_pk)
    return ModelStatus(
        model_id=info.model_id, model_version=info.model_version, state_version=model.state_version,
        mode=info.config.mode, round=model.round, pending_updates=pending,
        pending_devices=len(devices_of.get("gate", ())),
        reporters={group: len(devices) for group, devices in devices_of.items()},
        last_aggregation=last, last_refused=refused, accepted_total=sum(by_status.values()),
        aggregated_total=by_status.get("aggregated", 0), refused_total=by_status.get("refused", 0),
        config=info.config)


def device_status(db: Database, catalog: Catalog, model_id: str) -> DeviceStatus:
    """Versions and the open round: all a device needs to decide whether to download and train."""
    with db.sessions() as session:
        info = catalog.current(session, model_id)
        model = session.execute(select(Model.state_version, Model.round).where(Model.id == info.pk)).one()
    return DeviceStatus(model_id=info.model_id, model_version=info.model_version,
                        state_version=model.state_version, mode=info.config.mode, round=model.round)


def list_models(db: Database) -> list[str]:
    with db.sessions() as session:
        return list(session.execute(select(Model.model_id).order_by(Model.model_id)).scalars())
