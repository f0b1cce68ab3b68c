"""Worker tasks of the ops app: outbox delivery and its safety-net schedule.

Exactly once: a row is claimed with a conditional UPDATE (pending, or failed and due →
sending) so two workers, a retry and the schedule can never send the same row twice. The only
gap left is a worker that dies between the provider accepting the message and our UPDATE; the
row then stays in "sending" until SENDING_TIMEOUT and is sent again — a rare duplicate is
better than a lost billing notice.
"""

from __future__ import annotations

import structlog
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from ops import notifications
from ops.models import Notification
from ops.retry import next_retry_at

log = structlog.get_logger(__name__)

Status = Notification.Status


def deliver_notification(notification_id: int) -> str:
    """Send one outbox row if it is due; returns what happened (for task results and logs)."""
    now = timezone.now()
    claimed = (
        Notification.objects.filter(pk=notification_id)
        .filter(Q(status=Status.PENDING) | Q(status=Status.FAILED, next_attempt_at__lte=now))
        # While sending, next_attempt_at is the lease: past it, the sweeper takes the row back.
        .update(status=Status.SENDING, next_attempt_at=now + notifications.SENDING_TIMEOUT)
    )
    if not claimed:
        log.info("notification_not_claimed", notification_id=notification_id)
        return "skipped"

    notification = Notification.objects.select_related("member__user", "member__team").get(
        pk=notification_id
    )
    bound = log.bind(
        notification_id=notification.pk,
        kind=notification.kind,
        channel=notification.channel,
        attempt=notification.attempts + 1,
    )
    try:
        notifications.send(notification)
    except notifications.DeliveryError as exc:
        return _record_failure(notification, exc, bound)

    done = timezone.now()
    context = notification.context
    if notification.kind in notifications.SENSITIVE_KINDS:
        # A delivered login link must not linger in the database or the admin.
        context = {
            k: ("[removed after delivery]" if k in notifications.SENSITIVE_VARIABLES else v)
            for k, v in context.items()
        }
    Notification.objects.filter(pk=notification.pk, status=Status.SENDING).update(
        status=Status.SENT,
        sent_at=done,
        attempts=F("attempts") + 1,
        next_attempt_at=None,
        last_error="",
        context=context,
    )
    bound.info("notification_sent")
    return "sent"


def _record_failure(
    notification: Notification, exc: notifications.DeliveryError, bound: structlog.BoundLogger
) -> str:
    now = timezone.now()
    attempts = notification.attempts + 1
    error = notifications.redact(str(exc))
    if isinstance(exc, notifications.Undeliverable):
        status, retry_at = Status.UNDELIVERABLE, None
    else:
        status = Status.FAILED
        retry_at = None if exc.permanent else next_retry_at(attempts, now)
    Notification.objects.filter(pk=notification.pk, status=Status.SENDING).update(
        status=status, attempts=attempts, last_error=error, next_attempt_at=retry_at
    )
    if status == Status.UNDELIVERABLE:
        bound.info("notification_undeliverable", error=error)
        return "undeliverable"
    if retry_at is None:
        bound.error("notification_failed_permanently", error=error, attempts=attempts)
        return "failed"
    bound.warning("notification_failed_will_retry", error=error, retry_at=retry_at.isoformat())
    return "retry"


def deliver_due_notifications(batch_size: int = 200) -> int:
    """Schedule (every minute): take back rows of dead workers, then deliver what is due.

    Each due row goes through ``deliver_notification`` as its own task, whose claim makes a
    row picked up by two sweeps (or a sweep and its original task) go out once.
    """
    now = timezone.now()
    reclaimed = Notification.objects.filter(status=Status.SENDING, next_attempt_at__lte=now).update(
        status=Status.FAILED,
        attempts=F("attempts") + 1,
        next_attempt_at=now,
        last_error="the worker stopped while sending; delivery will be retried",
    )
    if reclaimed:
        log.warning("notifications_reclaimed_from_dead_worker", count=reclaimed)
    due = list(
        Notification.objects.filter(
            Q(status=Status.FAILED, next_attempt_at__lte=now)
            | Q(status=Status.PENDING, created_at__lte=now - notifications.LOST_TASK_AFTER)
        )
        .order_by("next_attempt_at", "created_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    for notification_id in due:
        async_task("ops.tasks.deliver_notification", notification_id)
    if due:
        log.info("notifications_due_enqueued", count=len(due))
    return len(due)


def worker_heartbeat() -> None:
    """Schedule (every minute): prove to ``/health/ready`` that a worker runs tasks.

    Written by a task, not by the cluster process, so a cluster that is up but no longer
    executing anything shows as stale.
    """
    import os
    import socket

    from ops.models import Heartbeat

    Heartbeat.objects.update_or_create(
        name="worker",
        defaults={
            "beat_at": timezone.now(),
            "details": {"host": socket.gethostname(), "pid": os.getpid()},
        },
    )


# --- reconciliation and housekeeping (ops/reconciliation.py) ---------------------------------

RECONCILE_RETRY_WHEN_BUSY = 10  # minutes a due run waits when another run holds the lease


def reconcile_run(run_id: int) -> str:
    """Execute one stored ``scheduled`` run (admin "run now", verification) if it is ours.

    The conditional claim makes a run picked up by its task, its one-off schedule and the
    daily safety net execute once. A failed run is recorded on its row and not retried: the
    next scheduled run covers the same ground.
    """
    from datetime import timedelta

    from ops import reconciliation

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
    from zoneinfo import ZoneInfo

    from ops import reconciliation
    from ops.models import GatewayConfig, ReconciliationRun

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
    from datetime import timedelta

    from djstripe.models import WebhookEventTrigger

    from billing.models import StripeEventInbox
    from ops.models import GatewayConfig, ReconciliationRun

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
            status=Status.SENT, sent_at__lt=cutoff
        ).delete()[0],
    }
    log.info("old_records_pruned", cutoff=cutoff.isoformat(), **deleted)
    return deleted
