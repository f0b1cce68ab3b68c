"""The role policy: which single managed role a linked member should hold.

Everything that changes roles (claim, join, introduction, billing failure and recovery, admin
overrides, reconciliation) converges Discord to this one function, so it must stay pure: a
frozen snapshot of the facts goes in, a role (or None) comes out. Whether the member is
entitled, or a debtor, is itself a fact here, decided by ``billing.entitlement`` (the one
entitlement rule); ``discordsync.selectors`` builds the snapshot from the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from billing.entitlement import Access
from members.models import ManagedRole, Override, SeatTier


@dataclass(frozen=True)
class RoleFacts:
    """What the policy needs to know about one member, read at one moment."""

    linked: bool
    entitled: bool  # billing.entitlement.access(...) == ENTITLED
    debtor: bool  # billing.entitlement.access(...) == DEBTOR
    introduced: bool
    seat_tier: str
    override: str = Override.NONE
    forced_role: str = ""
    introduction_required: bool = True


def role_facts(
    *,
    linked: bool,
    access: str,
    introduced: bool,
    seat_tier: str,
    override: str,
    forced_role: str,
    introduction_required: bool,
) -> RoleFacts:
    """The snapshot from the entitlement rule's outcome and the member's own fields."""
    return RoleFacts(
        linked=linked,
        entitled=access == Access.ENTITLED,
        debtor=access == Access.DEBTOR,
        introduced=introduced,
        seat_tier=seat_tier,
        override=override,
        forced_role=forced_role,
        introduction_required=introduction_required,
    )


def expected_role(facts: RoleFacts) -> str | None:
    """The managed role the member should hold; None means no managed role.

    Order matters: a revocation beats everything, Debtor beats the rest, and nothing is
    granted to a member who is not entitled — a forced role only chooses the role of an
    entitled member, and the introduction decides between Squire and the seat role.
    """
    if not facts.linked or facts.override == Override.REVOKED:
        return None
    if facts.debtor:
        return ManagedRole.DEBTOR
    if not facts.entitled:
        return None
    if facts.override == Override.FORCED and facts.forced_role in ManagedRole.values:
        return facts.forced_role
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
