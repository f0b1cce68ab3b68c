"""Worker tasks of the ops app: outbox delivery, its safety-net schedule and the heartbeat.

Exactly once: a row is claimed with a conditional UPDATE (pending, or failed and due →
sending) so two workers, a retry and the schedule can never send the same row twice. The only
gap left is a worker that dies between the provider accepting the message and our UPDATE; the
row then stays in "sending" until SENDING_TIMEOUT and is sent again — a rare duplicate is
better than a lost billing notice.
"""

from __future__ import annotations

import os
import socket

import structlog
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from ops import notifications
from ops.models import Heartbeat, Notification
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

    Heartbeat.objects.update_or_create(
        name="worker",
        defaults={
            "beat_at": timezone.now(),
            "details": {"host": socket.gethostname(), "pid": os.getpid()},
        },
    )
