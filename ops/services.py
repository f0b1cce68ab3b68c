"""Write services every app uses: the audit log and the notification outbox.

Both are called inside the caller's transaction, so a rolled-back change leaves neither an
audit row nor a message behind; delivery happens after commit in the worker.
"""

from __future__ import annotations

from typing import Any

import structlog
from django.db import IntegrityError, transaction
from django_q.tasks import async_task

from ops.models import AuditLog, Notification

log = structlog.get_logger(__name__)


def current_request_id() -> str:
    return str(structlog.contextvars.get_contextvars().get("request_id", ""))


def audit_record(
    *,
    actor_type: str,
    action: str,
    target: Any = None,
    actor_id: str = "",
    actor_label: str = "",
    details: dict[str, Any] | None = None,
    reason: str = "",
) -> AuditLog:
    """Record who did what to which object, and why."""
    return AuditLog.objects.create(
        actor_type=actor_type,
        actor_id=str(actor_id or ""),
        actor_label=actor_label,
        action=action,
        target_type=target._meta.model_name if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        details=details or {},
        reason=reason,
        request_id=current_request_id(),
    )


def notification_enqueue(
    *,
    kind: str,
    channel: str,
    recipient: str,
    episode: str = "",
    member: Any = None,
    context: dict[str, Any] | None = None,
) -> Notification | None:
    """Queue one message, at most once per (recipient, kind, episode).

    ``episode`` names the occurrence the message belongs to (a failure episode, a reminder
    step, a claim); the same key twice is a no-op, which is what makes retries, restarts and
    concurrent ticks safe. Returns the new row, or None when it already existed.
    """
    if not recipient:
        return None
    key = f"{channel}:{recipient}:{kind}:{episode}"
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                key=key[:255],
                channel=channel,
                kind=kind,
                recipient=recipient,
                member=member,
                context=context or {},
            )
    except IntegrityError:
        log.info("notification_duplicate_skipped", kind=kind, channel=channel, episode=episode)
        return None
    transaction.on_commit(lambda: async_task("ops.tasks.deliver_notification", notification.pk))
    return notification
