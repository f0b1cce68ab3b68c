"""The single-bot lease, guild join/leave services and the self-check verdict."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from discordsync.bot.selfcheck import (
    GuildFacts,
    RoleInfo,
    build_report,
    evaluate,
    selfcheck_store,
)
from discordsync.bot.services import member_guild_join, member_guild_leave
from members.models import Member
from ops.leases import lease_acquire, lease_release
from ops.models import AuditLog, Heartbeat, Notification
from tests.personas import SQUIRE_DISCORD_ID

TTL = timedelta(seconds=45)


@pytest.mark.django_db
def test_only_one_holder_until_the_lease_expires():
    now = timezone.now()
    assert lease_acquire(name="bot", holder="a", ttl=TTL, now=now)
    assert not lease_acquire(name="bot", holder="b", ttl=TTL, now=now + timedelta(seconds=30))
    # The holder renews; the waiter still cannot take it.
    assert lease_acquire(name="bot", holder="a", ttl=TTL, now=now + timedelta(seconds=15))
    assert not lease_acquire(name="bot", holder="b", ttl=TTL, now=now + timedelta(seconds=59))
    # The holder died (no more renewals): the waiter takes over after expiry...
    assert lease_acquire(name="bot", holder="b", ttl=TTL, now=now + timedelta(seconds=61))
    # ...and the old holder, if it comes back, has lost it.
    assert not lease_acquire(name="bot", holder="a", ttl=TTL, now=now + timedelta(seconds=62))


@pytest.mark.django_db
def test_released_lease_is_free_at_once():
    now = timezone.now()
    assert lease_acquire(name="bot", holder="a", ttl=TTL, now=now)
    assert not lease_release(name="bot", holder="b", now=now)
    assert lease_release(name="bot", holder="a", now=now)
    assert lease_acquire(name="bot", holder="b", ttl=TTL, now=now)


def test_join_and_leave_are_recorded_for_linked_members(squire, django_capture_on_commit_callbacks):
    now = timezone.now()
    with django_capture_on_commit_callbacks() as callbacks:
        assert member_guild_join(discord_id=SQUIRE_DISCORD_ID, now=now)
    assert len(callbacks) == 1  # role sync re-applies the expected role
    member = Member.objects.get(pk=squire.pk)
    assert (member.in_guild, member.guild_joined_at) == (True, now)

    later = now + timedelta(hours=1)
    with django_capture_on_commit_callbacks() as callbacks:
        assert member_guild_leave(discord_id=SQUIRE_DISCORD_ID, now=later)
    assert len(callbacks) == 1  # still entitled: the email with a way back in
    assert Notification.objects.get().kind == "guild_rejoin"
    member.refresh_from_db()
    assert (member.in_guild, member.guild_left_at) == (False, later)
    assert list(AuditLog.objects.order_by("id").values_list("action", flat=True)) == [
        "member.guild_joined",
        "member.guild_left",
    ]


@pytest.mark.django_db
def test_unknown_users_joining_or_leaving_change_nothing():
    assert not member_guild_join(discord_id="123", now=timezone.now())
    assert not member_guild_leave(discord_id="123", now=timezone.now())
    assert not AuditLog.objects.exists()


GUILD = settings.DISCORD_GUILD_ID
BOT_ROLE = "300000000000000005"
ALL_PERMS = (1 << 0) | (1 << 1) | (1 << 16) | (1 << 28)


def healthy_facts(**changes) -> GuildFacts:
    roles = {
        GUILD: RoleInfo(GUILD, "@everyone", 0, 1 << 10),
        **{
            role_id: RoleInfo(role_id, name, position, 0)
            for position, (name, role_id) in enumerate(settings.DISCORD_ROLE_IDS.items(), 1)
        },
        BOT_ROLE: RoleInfo(BOT_ROLE, "Gatekeeper", 5, ALL_PERMS),
    }
    values = {
        "guild_found": True,
        "guild_id": GUILD,
        "owner_id": "500000000000000001",
        "bot_user_id": "100000000000000001",
        "roles": roles,
        "bot_role_ids": [BOT_ROLE],
        "channel_ids": {
            settings.DISCORD_INTRODUCTIONS_CHANNEL_ID,
            settings.DISCORD_BILLING_SUPPORT_CHANNEL_ID,
            settings.DISCORD_ADMIN_CHANNEL_ID,
        },
        "intent_members": True,
        "intent_message_content": True,
    }
    values.update(changes)
    return GuildFacts(**values)


def codes(facts: GuildFacts) -> list[str]:
    return [p.code for p in evaluate(facts)]


def test_a_correct_guild_has_no_problems():
    assert codes(healthy_facts()) == []


def test_bot_role_below_managed_roles_is_reported():
    facts = healthy_facts()
    facts.roles[BOT_ROLE] = RoleInfo(BOT_ROLE, "Gatekeeper", 3, ALL_PERMS)
    assert codes(facts) == ["hierarchy:lord", "hierarchy:debtor"]


def test_missing_permissions_roles_channels_and_intents_are_reported():
    facts = healthy_facts(intent_message_content=False)
    facts.roles[BOT_ROLE] = RoleInfo(BOT_ROLE, "Gatekeeper", 5, 1 << 28)
    del facts.roles[settings.DISCORD_ROLE_IDS["debtor"]]
    facts.channel_ids.discard(settings.DISCORD_ADMIN_CHANNEL_ID)
    assert codes(facts) == [
        "role_missing:debtor",
        "permission:CREATE_INSTANT_INVITE",
        "permission:KICK_MEMBERS",
        "permission:READ_MESSAGE_HISTORY",
        "channel_missing:admin",
        "intent:message_content",
    ]


def test_administrator_covers_every_permission():
    facts = healthy_facts()
    facts.roles[BOT_ROLE] = RoleInfo(BOT_ROLE, "Gatekeeper", 5, 1 << 3)
    assert codes(facts) == []


def test_unknown_guild_is_one_problem():
    assert codes(GuildFacts(guild_found=False)) == ["guild_missing"]


@pytest.mark.django_db
def test_selfcheck_is_stored_on_the_heartbeat_and_alerts_once_per_problem_per_day(
    django_capture_on_commit_callbacks,
):
    # Midday: "per day" is the calendar day (UTC), so half an hour later is the same day
    # whenever the test runs.
    now = timezone.now().replace(hour=12, minute=0)
    failing = build_report(healthy_facts(intent_members=False), source="bot", now=now)
    with django_capture_on_commit_callbacks():
        selfcheck_store(failing, now=now)
        selfcheck_store(failing, now=now + timedelta(minutes=30))
    beat = Heartbeat.objects.get(name="bot")
    assert beat.details["selfcheck"]["ok"] is False
    assert beat.details["selfcheck"]["problems"][0]["code"] == "intent:members"
    alerts = Notification.objects.filter(kind="bot_alert")
    assert [(a.channel, a.recipient) for a in alerts] == [
        ("admin_channel", settings.DISCORD_ADMIN_CHANNEL_ID)
    ]

    with django_capture_on_commit_callbacks():
        selfcheck_store(build_report(healthy_facts(), source="bot", now=now), now=now)
    assert Heartbeat.objects.get(name="bot").details["selfcheck"]["ok"] is True
