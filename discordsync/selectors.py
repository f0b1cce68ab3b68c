"""Reads for role sync and linking: the facts snapshot the role policy decides on."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from billing.entitlement import member_access, member_is_entitled
from discordsync.policy import RoleFacts, expected_role, role_facts
from members.models import Member
from ops.flags import KNOWN_FLAGS, REQUIRE_INTRODUCTION, flag_enabled


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


def managed_role_ids() -> dict[str, str]:
    """Configured Discord role id per managed role name (unset roles left out)."""
    return {name: role_id for name, role_id in settings.DISCORD_ROLE_IDS.items() if role_id}
