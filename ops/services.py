"""Write services every app uses: the audit log and the notification outbox.

Both are called inside the caller's transaction, so a rolled-back change leaves neither an
audit row nor a message behind; delivery happens after commit in the worker.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import structlog
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_q.tasks import async_task

from ops.models import AuditAction, AuditActor, AuditLog, MessageTemplate, Notification
from ops.notifications import compile_template, unknown_variables
from ops.templates_registry import get_kind

log = structlog.get_logger(__name__)


def current_request_id() -> str:
    return str(structlog.contextvars.get_contextvars().get("request_id", ""))


def audit_actor(actor: Any, actor_type: str = AuditActor.STAFF, *, label: str = "") -> dict:
    """The audit fields of whoever acted: a staff user (the default ``actor_type``) or a member
    (``AuditActor.MEMBER``); ``None`` is the system. The label defaults to ``str(actor)``."""
    if actor is None:
        return {"actor_type": AuditActor.SYSTEM, "actor_id": "", "actor_label": label}
    return {"actor_type": actor_type, "actor_id": str(actor.pk), "actor_label": label or str(actor)}


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


def notification_key(*, channel: str, recipient: str, kind: str, episode: str) -> str:
    """The outbox's unique key: a digest of the whole tuple, never a prefix of it.

    A cut-off key made two long addresses (or long episode names) that share a prefix one
    message, and the second was dropped as a duplicate.
    """
    full = json.dumps([channel, recipient, kind, episode], ensure_ascii=False)
    return hashlib.sha256(full.encode()).hexdigest()


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

    ``kind`` must be in ``ops.templates_registry.KINDS`` and sent by ``channel``; context values
    may be dates and datetimes (stored as ISO strings, handed back to templates as datetimes).
    """
    message_kind = get_kind(kind)
    if channel not in message_kind.channels:
        raise ValueError(
            f"Message kind {kind!r} is sent by {', '.join(message_kind.channels)}, not {channel!r}"
        )
    if not recipient:
        return None
    # Round-trip through JSON now, so a value the column cannot store fails in the caller.
    context = json.loads(json.dumps(context or {}, cls=DjangoJSONEncoder))
    key = notification_key(channel=channel, recipient=recipient, kind=kind, episode=episode)
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                key=key,
                channel=channel,
                kind=kind,
                recipient=recipient,
                episode=episode,
                member=member,
                context=context,
            )
    except IntegrityError:
        log.info("notification_duplicate_skipped", kind=kind, channel=channel, episode=episode)
        return None
    _enqueue_delivery(notification.pk)
    return notification


def _enqueue_delivery(notification_id: int) -> None:
    transaction.on_commit(lambda: async_task("ops.tasks.deliver_notification", notification_id))


@transaction.atomic
def notification_retry_now(*, notification: Notification, actor: Any, reason: str = "") -> bool:
    """Staff asks for another attempt of a failed or undeliverable message, right away.

    Returns False (and changes nothing) when the row is not in a retryable state, e.g. it was
    sent meanwhile.
    """
    updated = Notification.objects.filter(
        pk=notification.pk,
        status__in=[Notification.Status.FAILED, Notification.Status.UNDELIVERABLE],
    ).update(status=Notification.Status.PENDING, next_attempt_at=timezone.now())
    if not updated:
        return False
    audit_record(
        **audit_actor(actor),
        action=AuditAction.NOTIFICATION_RETRY_NOW,
        target=notification,
        details={"kind": notification.kind, "previous_status": notification.status},
        reason=reason,
    )
    _enqueue_delivery(notification.pk)
    return True


@transaction.atomic
def message_template_save(
    *, kind: str, subject: str, body: str, actor: Any
) -> tuple[MessageTemplate, list[str]]:
    """Store a staff edit of a message; returns it and the unknown variables it uses.

    Unknown variables do not block the save (the wording is staff's call) but are reported
    and audited, because they render empty. A template that does not compile is refused.
    """
    get_kind(kind)
    compile_template(subject)
    compile_template(body)
    unknown = unknown_variables(kind, subject, body)
    previous = MessageTemplate.objects.filter(kind=kind).first()
    template, created = MessageTemplate.objects.update_or_create(
        kind=kind, defaults={"subject": subject, "body": body, "updated_by": str(actor)}
    )
    audit_record(
        **audit_actor(actor),
        action=AuditAction.MESSAGE_TEMPLATE_CREATED if created else "message_template.updated",
        target=template,
        details={
            "kind": kind,
            "unknown_variables": unknown,
            "previous": {"subject": previous.subject, "body": previous.body} if previous else None,
        },
    )
    return template, unknown


@transaction.atomic
def message_template_reset(*, template: MessageTemplate, actor: Any) -> None:
    """Drop a staff edit so the default files in ``templates/messages/`` apply again."""
    audit_record(
        **audit_actor(actor),
        action=AuditAction.MESSAGE_TEMPLATE_RESET,
        target=template,
        details={
            "kind": template.kind,
            "previous": {"subject": template.subject, "body": template.body},
        },
    )
    template.delete()
