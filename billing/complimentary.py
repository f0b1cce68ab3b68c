"""Complimentary memberships: access that staff grant without a subscription.

Staff grant one through ``billing.staff_services`` (reason required, optional end date,
audited). While it is open the entitlement rule (``billing.entitlement``) counts the member as
entitled and the role policy gives them the role the usual rules give (Squire until
introduced, then the seat role). It ends by staff action or, at its end date, by the billing
tick — through the normal ending path (``lifecycle.member_access_end``: farewell, roles
removed, kicked) unless a subscription still carries the membership (paid, or in grace,
Debtor or a dispute), in which case only their roles are converged. Granted to a linked
member outside the guild (kicked when an earlier access ended), it emails them the way back
in, once per absence.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from django.db import IntegrityError, transaction

from billing import lifecycle
from billing.entitlement import is_entitled, member_facts, paid_up
from billing.models import ComplimentaryMembership
from members.models import Member
from members.sync import guild_rejoin_request, role_sync_request
from ops.errors import ServiceError

log = structlog.get_logger(__name__)


class ComplimentaryError(ServiceError):
    """The grant or end cannot be applied as asked (the message is safe to show staff)."""


@transaction.atomic
def complimentary_grant(
    *, member: Member, reason: str, ends_at: datetime | None, granted_by: str, now: datetime
) -> ComplimentaryMembership:
    """Open a complimentary membership; the caller audits it with the staff member's name."""
    if ends_at is not None and ends_at <= now:
        raise ComplimentaryError("The end date must be in the future.")
    try:
        with transaction.atomic():
            membership = ComplimentaryMembership.objects.create(
                member=member, reason=reason, granted_by=granted_by, granted_at=now, ends_at=ends_at
            )
    except IntegrityError as exc:
        raise ComplimentaryError(f"{member} already has a complimentary membership.") from exc
    # Access starts again like a return: the ending of any earlier access is history now.
    Member.objects.filter(pk=member.pk).update(cancelled_at=None, updated_at=now)
    role_sync_request(member_id=member.pk)
    if Member.objects.filter(pk=member.pk, in_guild=False).exists():
        # Linked but outside the guild (kicked when an earlier access ended): the way back
        # in, once per absence.
        guild_rejoin_request(member_id=member.pk)
    return membership


@transaction.atomic
def complimentary_end(*, membership_id: int, reason: str, now: datetime) -> bool:
    """Close the membership (claimed with a conditional UPDATE, so the ending runs once).

    False when it was closed already.
    """
    claimed = ComplimentaryMembership.objects.filter(
        pk=membership_id, ended_at__isnull=True
    ).update(ended_at=now)
    if not claimed:
        return False
    membership = ComplimentaryMembership.objects.select_related("member__user", "member__team").get(
        pk=membership_id
    )
    member = membership.member
    facts = member_facts(member)
    # A subscription that still carries the membership (in grace, Debtor or a dispute) keeps
    # the member: the role sync gives them what it gives everyone it bills.
    if member.cancelled_at is None and not is_entitled(facts, now) and not paid_up(facts):
        lifecycle.member_access_end(
            member=member,
            subscription_id=f"complimentary:{membership.pk}",
            reason=reason,
            now=now,
        )
    else:
        role_sync_request(member_id=member.pk)
    log.info("complimentary_membership_ended", membership_id=membership_id, reason=reason)
    return True


def complimentary_expiring(*, due_by: datetime) -> list[int]:
    """Open complimentary memberships whose end date is reached by ``due_by``, read-only."""
    due = ComplimentaryMembership.objects.filter(ended_at__isnull=True, ends_at__lte=due_by)
    return list(due.order_by("ends_at", "pk").values_list("pk", flat=True))


def complimentary_expire_due(*, now: datetime, due_by: datetime | None = None) -> list[int]:
    """End at ``now`` every open complimentary membership whose end date is reached by
    ``due_by`` (default ``now``; the billing tick, ``billing_tick --at``)."""
    ended = []
    for membership_id in complimentary_expiring(due_by=due_by or now):
        if complimentary_end(membership_id=membership_id, reason="complimentary_expired", now=now):
            ended.append(membership_id)
    return ended
