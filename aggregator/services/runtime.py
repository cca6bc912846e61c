"""Everything one worker holds: settings, database, per-worker caches, metrics, scheduler.

The app factory builds one ``Runtime`` and routes receive it through ``api.deps``; the CLI builds
one (without scheduler) to run admin commands directly against the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aggregator.core.config import Settings
from aggregator.core.metrics import Metrics
from aggregator.db import Database
from aggregator.schemas import AggregationInfo
from aggregator.services.bank import StateCache
from aggregator.services.catalog import Catalog
from aggregator.services.devices import TokenCache
from aggregator.services.intake import Intake, Limits
from aggregator.services.items import ItemTableCache
from aggregator.services.lookup_limits import LookupLimits
from aggregator.services.rounds import aggregate_model, due_models, scrub_payloads
from aggregator.services.scheduler import Scheduler

__all__ = ["Runtime"]


@dataclass
class Runtime:
    settings: Settings
    db: Database
    catalog: Catalog
    tokens: TokenCache
    states: StateCache
    metrics: Metrics
    limits: Limits
    item_tables: ItemTableCache = field(default_factory=ItemTableCache)
    lookup_limits: LookupLimits = field(default_factory=lambda: LookupLimits(per_minute=0, burst=1))
    scheduler: Scheduler = field(init=False)
    intake: Intake = field(init=False)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        db = Database(settings)
        runtime = cls(settings=settings, db=db, catalog=Catalog(), tokens=TokenCache(db, ttl_s=settings.token_cache_s),
                      states=StateCache(), metrics=Metrics(),
                      limits=Limits(per_minute=settings.rate_limit_per_minute, burst=settings.rate_limit_burst),
                      lookup_limits=LookupLimits(per_minute=settings.lookup_rate_per_minute,
                                                 burst=settings.lookup_burst))
        runtime.intake = Intake(db, runtime.catalog, runtime.limits, max_batch=settings.intake_max_batch,
                                committers=settings.intake_committers, max_queue=settings.intake_max_queue,
                                max_queue_bytes=settings.intake_max_queue_bytes,
                                commit_delay_s=settings.intake_commit_delay_ms / 1000,
                                max_metadata_bytes=settings.max_metadata_bytes)
        runtime.intake.on_batch = runtime.metrics.intake_batch
        runtime.scheduler = Scheduler(runtime.close_due_rounds, interval_s=settings.scheduler_interval_s,
                                      tick_s=settings.scheduler_tick_s)
        return runtime

    def close_round(self, model_pk: int, *, trigger: str, force: bool = False) -> AggregationInfo | None:
        """Aggregate one model if due (or forced), recording metrics (blocking)."""
        result = aggregate_model(self.db, self.catalog, model_pk, trigger=trigger, force=force,
                                 keep_versions=self.settings.keep_state_versions)
        if result is not None and not self.settings.keep_update_payloads:
            scrub_payloads(self.db)
        if result is not None:
            with self.db.sessions() as session:
                model_id = self.catalog.by_pk(session, model_pk).model_id
            if result.outcome == "refused":
                self.metrics.aggregation_refused(model_id, reason=(result.reason or "").split(":")[0])
            else:
                self.metrics.aggregated(model_id, trigger=result.trigger, updates=result.updates,
                                        seconds=result.duration_ms / 1000)
        return result

    def close_due_rounds(self) -> list[AggregationInfo]:
        """The scheduler's check: close every due round (blocking)."""
        due = due_models(self.db, self.catalog, now=time.time())
        return [r for pk, trigger in due if (r := self.close_round(pk, trigger=trigger)) is not None]
