"""sync_member_roles and member_remove_from_guild against the fake Discord."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import FailureEpisode
from discordsync.client import DiscordTransientError
from discordsync.tasks import member_remove_from_guild, sync_member_roles
from members.models import Member, Override, RoleSyncStatus
from ops.models import AuditLog, Notification
from tests import personas
from tests.personas import LANCELOT, ROLE_IDS

pytestmark = pytest.mark.django_db


def _writes(discord):
    return [
        e
        for e in discord.requests(path_prefix=f"/guilds/{discord.guild_id}/members/")
        if e["method"] in ("PUT", "DELETE")
    ]


def _managed(discord, user_id):
    held = discord.member_roles(user_id) or []
    names = {v: k for k, v in ROLE_IDS.items()}
    return sorted(names[r] for r in held if r in names)


def test_new_member_becomes_squire_and_a_second_sync_writes_nothing(discord):
    member = personas.member("lancelot", discord_id=LANCELOT)

    assert sync_member_roles(member.pk) == RoleSyncStatus.OK
    assert _managed(discord, LANCELOT) == ["squire"]
    assert len(_writes(discord)) == 1
    member.refresh_from_db()
    assert member.discord_roles == ["squire"]
    assert member.in_guild and member.roles_synced_at is not None
    assert (
        AuditLog.objects.filter(action="discord_role_added", target_id=str(member.pk)).count() == 1
    )

    assert sync_member_roles(member.pk) == RoleSyncStatus.OK
    assert len(_writes(discord)) == 1  # no difference, no write


def test_stale_roles_are_removed_before_the_expected_one_is_added(discord):
    discord.set_member_roles(LANCELOT, [ROLE_IDS["knight"], ROLE_IDS["debtor"]])
    member = personas.member("lancelot", discord_id=LANCELOT, introduced_at=timezone.now())

    sync_member_roles(member.pk)

    assert _managed(discord, LANCELOT) == ["lord"]
    writes = [(e["method"], e["api_path"].rsplit("/", 1)[-1]) for e in _writes(discord)]
    assert writes[-1] == ("PUT", ROLE_IDS["lord"])
    assert sorted(writes[:2]) == sorted(
        [("DELETE", ROLE_IDS["knight"]), ("DELETE", ROLE_IDS["debtor"])]
    )
    assert all(e["reason"].startswith("Membership Gateway") for e in _writes(discord))


def test_debtor_phase_swaps_to_debtor_and_cancellation_removes_everything(discord):
    now = timezone.now()
    member = personas.member("lancelot", discord_id=LANCELOT, introduced_at=now)
    sync_member_roles(member.pk)
    FailureEpisode.objects.create(
        subscription_id=member.subscription_id,
        member=member,
        opened_at=now - timedelta(days=3),
        grace_ends_at=now - timedelta(days=1),
        debtor_at=now - timedelta(days=1),
    )
    sync_member_roles(member.pk)
    assert _managed(discord, LANCELOT) == ["debtor"]

    personas.set_status(member.subscription_id, "canceled")
    sync_member_roles(member.pk)
    assert _managed(discord, LANCELOT) == []
    member.refresh_from_db()
    assert member.discord_roles == []


def test_admin_override_is_honoured(discord):
    member = personas.member("lancelot", discord_id=LANCELOT, introduced_at=timezone.now())
    Member.objects.filter(pk=member.pk).update(override=Override.FORCED, forced_role="knight")
    sync_member_roles(member.pk)
    assert _managed(discord, LANCELOT) == ["knight"]
    Member.objects.filter(pk=member.pk).update(override=Override.REVOKED, forced_role="")
    sync_member_roles(member.pk)
    assert _managed(discord, LANCELOT) == []


def test_member_not_in_guild_is_recorded_without_retrying(discord):
    member = personas.member("arthur", discord_id="500000000000000002")
    assert sync_member_roles(member.pk) == RoleSyncStatus.NOT_IN_GUILD
    member.refresh_from_db()
    assert member.in_guild is False and member.role_sync_status == RoleSyncStatus.NOT_IN_GUILD
    assert _writes(discord) == []


def test_unlinked_member(discord):
    member = personas.member("percival")
    assert sync_member_roles(member.pk) == RoleSyncStatus.NOT_LINKED
    assert discord.requests() == []


def test_forbidden_write_is_not_retried_and_alerts_once(discord):
    discord.set_bot_role_position(1)  # the classic mistake: bot role below the managed roles
    member = personas.member("lancelot", discord_id=LANCELOT)

    assert sync_member_roles(member.pk) == RoleSyncStatus.FAILED
    assert sync_member_roles(member.pk) == RoleSyncStatus.FAILED

    assert [e["status"] for e in _writes(discord)] == [403, 403]  # one attempt per sync
    member.refresh_from_db()
    assert member.role_sync_status == RoleSyncStatus.FAILED
    assert "403" in member.role_sync_error
    alerts = Notification.objects.filter(kind="bot_alert", channel="admin_channel")
    assert alerts.count() == 1
    assert str(member.pk) in alerts.get().context["summary"]


def test_transient_failure_raises_so_the_queue_retries(discord):
    discord.add_fault(
        f"/guilds/{discord.guild_id}/members", 500, method="GET", count=None, seconds=30
    )
    member = personas.member("lancelot", discord_id=LANCELOT)
    with pytest.raises(DiscordTransientError):
        sync_member_roles(member.pk)
    member.refresh_from_db()
    assert member.role_sync_status == RoleSyncStatus.FAILED
    discord.clear_faults()
    assert sync_member_roles(member.pk) == RoleSyncStatus.OK


def test_remove_from_guild_strips_roles_and_kicks(discord):
    member = personas.member("lancelot", discord_id=LANCELOT, status="canceled")
    discord.set_member_roles(LANCELOT, [ROLE_IDS["knight"]])

    assert member_remove_from_guild(member.pk, "subscription ended") == RoleSyncStatus.NOT_IN_GUILD

    assert discord.member_roles(LANCELOT) is None  # kicked
    kick = discord.requests(
        method="DELETE", path_prefix=f"/guilds/{discord.guild_id}/members/{LANCELOT}"
    )
    assert [e["api_path"].endswith(LANCELOT) for e in kick] == [
        False,
        True,
    ]  # role first, then kick
    member.refresh_from_db()
    assert member.in_guild is False and member.discord_roles == []
    assert AuditLog.objects.filter(
        action="discord_member_kicked", target_id=str(member.pk)
    ).exists()


def test_remove_from_guild_does_not_kick_a_member_who_is_entitled_again(discord):
    member = personas.member("lancelot", discord_id=LANCELOT, status="active")
    member_remove_from_guild(member.pk, "stale request")
    assert discord.member_roles(LANCELOT) == [ROLE_IDS["squire"]]
