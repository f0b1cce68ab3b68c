"""Claim reminders: a paid member who has not linked Discord yet is nudged by email.

Cadence (``ops.GatewayConfig``): ``claim_reminder_hours`` after the first payment of the
current subscription (48 h and 7 days by default, ``claim_reminder``), then every
``claim_reminder_every_days`` up to ``claim_reminder_until_days`` (30…180 days,
``claim_reminder_late``). Anchored at ``Member.paid_at`` — not account creation — and keyed in
the outbox by subscription, access period (``paid_at``) and step, so a reminder is sent once per
period however often the tick runs, and a return (a new subscription, or the same one settled
after it ended) starts its own cadence. After
downtime only the latest due step goes out. Linking Discord stops them:
linked members are simply no longer selected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.db import transaction

from billing.entitlement import entitled_member_ids
from billing.lifecycle import parse_steps
from members.models import Member
from ops.models import GatewayConfig
from ops.services import notification_enqueue

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ClaimStep:
    kind: str
    offset: timedelta

    @property
    def name(self) -> str:
        return f"claim:{int(self.offset.total_seconds() // 3600)}h"


def claim_cadence(config: GatewayConfig) -> list[ClaimStep]:
    """Every reminder step, earliest first."""
    steps = [
        ClaimStep("claim_reminder", timedelta(hours=hours))
        for hours in parse_steps(config.claim_reminder_hours, what="claim_reminder_hours")
        if hours > 0
    ]
    every = config.claim_reminder_every_days
    if every > 0:
        early_end = steps[-1].offset if steps else timedelta(0)
        days = every
        while days <= config.claim_reminder_until_days:
            if timedelta(days=days) > early_end:
                steps.append(ClaimStep("claim_reminder_late", timedelta(days=days)))
            days += every
    return sorted(steps, key=lambda step: step.offset)


def latest_due_step(steps: list[ClaimStep], paid_at: datetime, now: datetime) -> ClaimStep | None:
    due = [step for step in steps if paid_at + step.offset <= now]
    return due[-1] if due else None


def claim_episode(member: Member, step: ClaimStep) -> str:
    """Outbox episode of a claim reminder: per subscription and access period (``paid_at``),
    so a team or subscriber that returns on the same subscription hears the cadence again."""
    period = int(member.paid_at.timestamp()) if member.paid_at else 0
    return f"{member.billing_subscription_id or member.pk}:{period}:{step.name}"


def claim_reminders_due(
    *, now: datetime, due_by: datetime | None = None
) -> list[tuple[Member, ClaimStep]]:
    """Every paid, unlinked, entitled member and the latest claim reminder due by ``due_by``
    (default ``now``); read-only, so ``billing_tick --dry-run`` can list them."""
    due_by = due_by or now
    config = GatewayConfig.load()
    steps = claim_cadence(config)
    if not steps:
        return []
    # Members past the last step by more than one interval were reminded for the last time
    # already (or missed it during a long outage and are better left alone).
    oldest = due_by - steps[-1].offset - timedelta(days=max(config.claim_reminder_every_days, 1))
    candidates = list(
        Member.objects.select_related("user", "team")
        .filter(
            discord_id__isnull=True,
            cancelled_at__isnull=True,
            paid_at__isnull=False,
            paid_at__lte=due_by - steps[0].offset,
            paid_at__gte=oldest,
            user__email__isnull=False,
        )
        .order_by("paid_at", "pk")
    )
    entitled = entitled_member_ids(candidates, now)
    due: list[tuple[Member, ClaimStep]] = []
    for member in candidates:
        if member.pk not in entitled or member.paid_at is None:
            continue
        step = latest_due_step(steps, member.paid_at, due_by)
        if step is not None:
            due.append((member, step))
    return due


def claim_reminders_send(
    *,
    now: datetime,
    due_by: datetime | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[str]:
    """Queue the latest claim reminder due by ``due_by`` of every paid, unlinked member;
    returns what was new.

    Safe to run concurrently: the outbox key makes a second insert of the same step a no-op.
    """
    stop = should_stop or (lambda: False)
    sent: list[str] = []
    for member, step in claim_reminders_due(now=now, due_by=due_by):
        if stop():
            break
        paid_at = member.paid_at or now
        days = int((now - paid_at) / timedelta(days=1))
        with transaction.atomic():
            queued = notification_enqueue(
                kind=step.kind,
                channel="email",
                recipient=member.user.email or "",
                episode=claim_episode(member, step),
                member=member,
                context={"days_since_payment": days} if step.kind == "claim_reminder_late" else {},
            )
        if queued is not None:
            sent.append(f"member {member.pk}: {step.name}")
    if sent:
        log.info("claim_reminders_queued", count=len(sent))
    return sent
