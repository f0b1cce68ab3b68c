"""Tasks of the top floor (reconciliation, pruning across apps), and the request id carried
from the code that enqueues a django-q2 task into the worker.

django-q2 pickles the whole task dict through the broker, so a dedicated key
(``REQUEST_ID_KEY``) travels with the task without touching the task function's arguments.
``pre_enqueue`` stores the current id (or a fresh one when nothing is bound, e.g. for the
scheduler); ``pre_execute`` binds it in the worker before the function runs, and
``post_execute_in_worker`` removes what was bound, so the next task on that worker process
starts clean.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextvars import Token
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from django.utils import timezone
from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute
from djstripe.models import WebhookEventTrigger

from billing.models import StripeEventInbox
from gateway import reconciliation
from ops.models import GatewayConfig, Notification, ReconciliationRun

log = structlog.get_logger(__name__)

REQUEST_ID_KEY = "gateway_request_id"

# Tokens of the variables bound for a running task, by task id, so they can be reset.
_bound: dict[str, Mapping[str, Token[Any]]] = {}


def new_request_id() -> str:
    return str(uuid.uuid4())


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value else None


def stash_request_id(sender: Any = None, task: dict[str, Any] | None = None, **_: Any) -> None:
    if task is None:
        return
    task[REQUEST_ID_KEY] = current_request_id() or new_request_id()


def bind_task_context(
    sender: Any = None, func: Any = None, task: dict[str, Any] | None = None, **_: Any
) -> None:
    if task is None:
        return
    if not task.get("sync", False):
        # A worker process runs task after task: nothing of the previous one may leak.
        # An inline (sync) task runs inside its caller, whose context must survive.
        structlog.contextvars.clear_contextvars()
    tokens = structlog.contextvars.bind_contextvars(
        request_id=task.get(REQUEST_ID_KEY) or new_request_id(),
        task_id=str(task.get("id", "")),
        task_name=str(task.get("name", "")),
    )
    _bound[str(task.get("id", ""))] = tokens


def unbind_task_context(
    sender: Any = None, func: Any = None, task: dict[str, Any] | None = None, **_: Any
) -> None:
    if task is None:
        return
    tokens = _bound.pop(str(task.get("id", "")), None)
    if tokens:
        structlog.contextvars.reset_contextvars(**tokens)


def connect() -> None:
    """Connect the handlers (idempotent: ``dispatch_uid`` guards against a second call)."""
    pre_enqueue.connect(stash_request_id, dispatch_uid="gateway.tasks.stash_request_id")
    pre_execute.connect(bind_task_context, dispatch_uid="gateway.tasks.bind_task_context")
    post_execute_in_worker.connect(
        unbind_task_context, dispatch_uid="gateway.tasks.unbind_task_context"
    )


# --- reconciliation (gateway/reconciliation.py) and housekeeping -----------------------------

RECONCILE_RETRY_WHEN_BUSY = 10  # minutes a due run waits when another run holds the lease


def reconcile_run(run_id: int) -> str:
    """Execute one stored ``scheduled`` run (admin "run now", verification) if it is ours.

    The conditional claim makes a run picked up by its task, its one-off schedule and the
    daily safety net execute once. A failed run is recorded on its row and not retried: the
    next scheduled run covers the same ground.
    """
    if reconciliation.lease_busy():
        reconciliation.run_postpone(
            run_id=run_id, delay=timedelta(minutes=RECONCILE_RETRY_WHEN_BUSY)
        )
        log.info("reconciliation_postponed_lease_busy", run_id=run_id)
        return "postponed"
    run = reconciliation.run_claim(run_id=run_id)
    if run is None:
        return "skipped"
    return reconciliation.run_execute(run=run)


def reconcile_verify(run_id: int) -> str:
    """The verification run an hour after a fixing run (fired by its one-off schedule)."""
    return reconcile_run(run_id)


def reconcile_scheduled() -> str:
    """Schedule (daily at ``reconcile_hour`` local): queue overdue stored runs and the daily run.

    The cron line decides the hour (``ops.schedules.reconcile_cron``); the daily run is
    claimed by inserting the row of the local day (unique ``scheduled_day``), so two workers,
    a worker catching up after downtime or a repeated schedule never run it twice. When staff
    paused reconciliation the day's row is stored as ``skipped`` and nothing else happens.
    Overdue stored runs are verification runs whose one-off schedule was lost, and staff runs
    whose task was.
    """
    now = timezone.now()
    outcomes = []
    due = ReconciliationRun.objects.filter(
        status=ReconciliationRun.Status.SCHEDULED, scheduled_for__lte=now
    ).order_by("scheduled_for")
    for run_id in due.values_list("pk", flat=True):
        # A task of its own each: a run may take longer than this task is allowed to.
        reconciliation.run_enqueue(run_id=run_id)
        outcomes.append(f"queued:{run_id}")
    config = GatewayConfig.load()
    run = reconciliation.daily_run_claim(
        day=now.astimezone(ZoneInfo(config.reconcile_timezone)).date(),
        paused=config.reconcile_paused,
        fix=config.reconcile_autofix,
        now=now,
    )
    if run is None:
        outcomes.append("daily:already_claimed")
    elif run.status == ReconciliationRun.Status.SKIPPED:
        log.info("reconciliation_skipped_paused", run_id=run.pk)
        outcomes.append("daily:skipped")
    else:
        reconciliation.run_enqueue(run_id=run.pk)
        outcomes.append("daily:queued")
    return ",".join(outcomes)


def prune_old_records() -> dict[str, int]:
    """Schedule (daily): forget what is older than ``GatewayConfig.retention_days``.

    Only finished business is deleted — processed webhook deliveries, finished reconciliation
    runs, sent notifications. Anything unprocessed, failing, undeliverable or still queued is
    kept however old, because it is exactly what an operator still needs to look at.
    """
    cutoff = timezone.now() - timedelta(days=GatewayConfig.load().retention_days)
    deleted = {
        "webhook_triggers": WebhookEventTrigger.objects.filter(
            created__lt=cutoff, processed=True
        ).delete()[0],
        "stripe_events": StripeEventInbox.objects.filter(
            received_at__lt=cutoff,
            status__in=[StripeEventInbox.Status.PROCESSED, StripeEventInbox.Status.IGNORED],
        ).delete()[0],
        "reconciliation_runs": ReconciliationRun.objects.filter(
            finished_at__lt=cutoff,
            status__in=[
                ReconciliationRun.Status.CLEAN,
                ReconciliationRun.Status.DRIFT,
                ReconciliationRun.Status.FAILED,
                ReconciliationRun.Status.SKIPPED,
            ],
        ).delete()[0],
        "notifications": Notification.objects.filter(
            status=Notification.Status.SENT, sent_at__lt=cutoff
        ).delete()[0],
    }
    log.info("old_records_pruned", cutoff=cutoff.isoformat(), **deleted)
    return deleted
