"""The role policy: which single managed role a linked member should hold.

Everything that changes roles (claim, join, introduction, billing failure and recovery, admin
overrides, reconciliation) converges Discord to this one function, so it must stay pure: a
frozen snapshot of the facts goes in, a role (or None) comes out. ``discordsync.selectors``
builds the snapshot from the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from billing.selectors import ENTITLED_STATUSES
from members.models import ManagedRole, Override, SeatTier


@dataclass(frozen=True)
class RoleFacts:
    """What the policy needs to know about one member, read at one moment."""

    linked: bool
    subscription_status: str  # "" when there is no subscription
    debtor_at: datetime | None  # when the open failure episode enters (entered) Debtor
    introduced: bool
    seat_tier: str
    override: str = Override.NONE
    forced_role: str = ""
    introduction_required: bool = True


def expected_role(facts: RoleFacts, now: datetime) -> str | None:
    """The managed role the member should hold at ``now``; None means no managed role.

    Order matters: an admin override beats billing, Debtor beats the introduction, and
    the introduction decides between Squire and the seat role.
    """
    if not facts.linked:
        return None
    if facts.override == Override.REVOKED:
        return None
    if facts.override == Override.FORCED and facts.forced_role in ManagedRole.values:
        return facts.forced_role
    if facts.subscription_status not in ENTITLED_STATUSES:
        return None
    if facts.debtor_at is not None and facts.debtor_at <= now:
        return ManagedRole.DEBTOR
    if facts.introduction_required and not facts.introduced:
        return ManagedRole.SQUIRE
    return seat_role(facts.seat_tier)


def seat_role(seat_tier: str) -> str:
    """Lord for owner seats, Knight for team seats, the configured role for individuals."""
    if seat_tier == SeatTier.OWNER:
        return ManagedRole.LORD
    if seat_tier == SeatTier.TEAM:
        return ManagedRole.KNIGHT
    return ManagedRole.LORD if settings.INDIVIDUAL_ROLE == "lord" else ManagedRole.KNIGHT


def is_entitled(facts: RoleFacts, now: datetime) -> bool:
    """Paid and not in Debtor (admin overrides aside): what claims and seat invites require."""
    if facts.subscription_status not in ENTITLED_STATUSES:
        return False
    return facts.debtor_at is None or facts.debtor_at > now
