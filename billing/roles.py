"""The role policy: which single managed role a linked member should hold, and the readers
that build its facts from the database.

Everything that changes roles (claim, join, introduction, billing failure and recovery, admin
overrides, reconciliation) converges Discord to this one function, so it must stay pure: a
frozen snapshot of the facts goes in, a role (or None) comes out. Whether the member is
entitled, or a debtor, is itself a fact here, decided by ``billing.entitlement`` (the one
entitlement rule); ``role_facts_for`` builds the snapshot from the database. It sits on the
billing floor, above the entitlement rule it reads, so every floor that names a member's role
(the failure timeline's messages, Discord role sync, the staff console) can ask it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from billing.entitlement import Access, member_access, member_is_entitled
from members.models import ManagedRole, Member, Override, SeatTier
from ops.flags import KNOWN_FLAGS, REQUIRE_INTRODUCTION, flag_enabled


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


def introduction_required() -> bool:
    """On unless staff switched the ``require_introduction`` flag off."""
    return flag_enabled(REQUIRE_INTRODUCTION, KNOWN_FLAGS[REQUIRE_INTRODUCTION].default)


def role_facts_for(member: Member, now: datetime) -> RoleFacts:
    return role_facts(
        linked=bool(member.discord_id),
        access=member_access(member, now),
        introduced=member.introduced_at is not None,
        seat_tier=member.seat_tier,
        override=member.override,
        forced_role=member.forced_role,
        introduction_required=introduction_required(),
    )


def member_expected_role(member: Member, now: datetime) -> str | None:
    return expected_role(role_facts_for(member, now))


def member_belongs_in_guild(member: Member, now: datetime) -> bool:
    """Entitled and not shut out by staff: the member should be in the guild with a role."""
    return member_is_entitled(member, now) and member_expected_role(member, now) is not None
