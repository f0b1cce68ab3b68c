"""The django-q2 schedules the worker runs, declared in one list and applied by name.

``sync_schedules()`` creates a missing schedule, updates one whose definition changed and
leaves the rest alone, so running it on every deploy (``setup_schedules``, and after every
``migrate``) never duplicates a job or pushes a due run further away. django-q2 runs a
schedule by import path in the worker, so every ``func`` here must import
(``tests/gateway/test_schedules.py`` proves which do).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone
from django_q.models import Schedule

from ops.models import GatewayConfig

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    func: str
    minutes: int | None = None
    cron: str | None = None

    @property
    def schedule_type(self) -> str:
        return Schedule.CRON if self.cron else Schedule.MINUTES


def reconcile_cron(config: GatewayConfig, now: datetime | None = None) -> str:
    """Daily at ``reconcile_hour`` in ``reconcile_timezone``, as a cron line in UTC.

    django-q2 evaluates cron lines in Django's ``TIME_ZONE`` (UTC here). The offset is the
    one in force today; saving the gateway settings, or the next deploy, re-applies it, so a
    DST change moves the run by at most an hour until then.
    """
    now = now or timezone.now()
    local = now.astimezone(ZoneInfo(config.reconcile_timezone))
    at = local.replace(hour=config.reconcile_hour, minute=0, second=0, microsecond=0)
    utc = at.astimezone(ZoneInfo("UTC"))
    return f"{utc.minute} {utc.hour} * * *"


def jobs(config: GatewayConfig) -> list[Job]:
    return [
        Job("worker heartbeat", "ops.tasks.worker_heartbeat", minutes=1),
        Job("deliver due notifications", "ops.tasks.deliver_due_notifications", minutes=1),
        Job("drain stripe events", "billing.tasks.drain_stripe_events", minutes=1),
        Job("billing tick", "billing.tasks.billing_tick", minutes=5),
        Job(
            "daily reconciliation", "gateway.tasks.reconcile_scheduled", cron=reconcile_cron(config)
        ),
        Job("prune old records", "gateway.tasks.prune_old_records", cron="30 3 * * *"),
    ]


def _current_config(using: str) -> GatewayConfig:
    # Read-only: the row may not exist yet (fresh database); its defaults apply until saved.
    return GatewayConfig.objects.using(using).filter(pk=1).first() or GatewayConfig()


@transaction.atomic
def sync_schedules(*, using: str = DEFAULT_DB_ALIAS) -> dict[str, str]:
    """Apply :func:`jobs`; return what happened to each schedule by name."""
    outcome: dict[str, str] = {}
    for job in jobs(_current_config(using)):
        wanted: dict[str, Any] = {
            "func": job.func,
            "schedule_type": job.schedule_type,
            "minutes": job.minutes,
            "cron": job.cron,
            "repeats": -1,
        }
        existing = list(
            Schedule.objects.using(using).select_for_update().filter(name=job.name).order_by("id")
        )
        if not existing:
            schedule = Schedule(name=job.name, **wanted)
            schedule.save(using=using)
            outcome[job.name] = "created"
            continue
        schedule, duplicates = existing[0], existing[1:]
        for duplicate in duplicates:
            duplicate.delete()
        changed = [field for field, value in wanted.items() if getattr(schedule, field) != value]
        if changed:
            timing_changed = {"schedule_type", "minutes", "cron"} & set(changed)
            for field in changed:
                setattr(schedule, field, wanted[field])
            if timing_changed:
                schedule.next_run = (
                    schedule.calculate_next_run(timezone.now()) if job.cron else timezone.now()
                )
            schedule.save(using=using)
        outcome[job.name] = "updated" if changed or duplicates else "unchanged"
    log.info("schedules_synced", **{k.replace(" ", "_"): v for k, v in outcome.items()})
    return outcome


def sync_after_migrate(sender: Any = None, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    # A partial migrate (``migrate ops``) can leave django-q2's tables for later.
    tables = set(connections[using].introspection.table_names())
    if {Schedule._meta.db_table, GatewayConfig._meta.db_table} <= tables:
        sync_schedules(using=using)


def sync_after_config_change(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    """The reconciliation hour is edited in the admin; the schedule follows without a restart."""
    sync_schedules(using=kwargs.get("using") or DEFAULT_DB_ALIAS)
