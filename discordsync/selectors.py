"""Reads for role sync and linking: the facts snapshot the role policy decides on."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from billing.selectors import open_failure_episode, subscription_statuses
from discordsync.policy import RoleFacts, expected_role, is_entitled
from members.models import Member
from ops.flags import KNOWN_FLAGS, REQUIRE_INTRODUCTION, flag_enabled


def _billing_facts(subscription_id: str) -> tuple[str, datetime | None]:
    """(Stripe status, when the open failure episode enters Debtor) for one subscription."""
    if not subscription_id:
        return "", None
    status = subscription_statuses([subscription_id]).get(subscription_id, "")
    episode = open_failure_episode(subscription_id)
    return status, episode.debtor_at if episode is not None else None


def introduction_required() -> bool:
    """On unless staff switched the ``require_introduction`` flag off."""
    return flag_enabled(REQUIRE_INTRODUCTION, KNOWN_FLAGS[REQUIRE_INTRODUCTION].default)


def role_facts_for(member: Member, now: datetime) -> RoleFacts:
    status, debtor_at = _billing_facts(member.billing_subscription_id)
    return RoleFacts(
        linked=bool(member.discord_id),
        subscription_status=status,
        debtor_at=debtor_at,
        introduced=member.introduced_at is not None,
        seat_tier=member.seat_tier,
        override=member.override,
        forced_role=member.forced_role,
        introduction_required=introduction_required(),
    )


def member_expected_role(member: Member, now: datetime) -> str | None:
    return expected_role(role_facts_for(member, now), now)


def member_entitled(member: Member, now: datetime) -> bool:
    """Paid (individually or through the team) and not in Debtor."""
    return is_entitled(role_facts_for(member, now), now)


def team_entitled(team_subscription_id: str, now: datetime) -> bool:
    """A team's seats may be claimed only while its subscription is paid and not in Debtor."""
    status, debtor_at = _billing_facts(team_subscription_id)
    facts = RoleFacts(
        linked=True,
        subscription_status=status,
        debtor_at=debtor_at,
        introduced=False,
        seat_tier="",
    )
    return is_entitled(facts, now)


def managed_role_ids() -> dict[str, str]:
    """Configured Discord role id per managed role name (unset roles left out)."""
    return {name: role_id for name, role_id in settings.DISCORD_ROLE_IDS.items() if role_id}
