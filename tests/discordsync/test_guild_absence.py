"""A linked member who left the guild while entitled gets one email per absence with a way back
in, and the claim flow (/claim/) really adds them to the guild again through OAuth
``guilds.join`` against the fake Discord over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from discordsync.bot.services import member_guild_join, member_guild_leave
from members.models import Member, Override
from ops.models import AuditLog, Notification
from tests import personas
from tests.personas import ARTHUR, GUINEVERE, ROLE_IDS
from tests.providers import authorize

pytestmark = pytest.mark.django_db

CALLBACK = "/oauth/discord/callback/"


def _rejoin_emails(member: Member) -> list[Notification]:
    return list(Notification.objects.filter(member=member, kind="guild_rejoin"))


@pytest.fixture
def lancelot(discord):
    """An introduced, paying member linked to ARTHUR, who is not in the guild right now."""
    return personas.member("lancelot", discord_id=ARTHUR, introduced_at=timezone.now())


def test_leaving_while_entitled_sends_one_email_per_absence(
    discord, lancelot, settings, django_capture_on_commit_callbacks
):
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        member_guild_leave(discord_id=ARTHUR, now=now)
        # The same leave seen twice (a replayed event, reconciliation) is still one absence.
        member_guild_leave(discord_id=ARTHUR, now=now + timedelta(minutes=5))
    (email,) = mail.outbox
    assert email.to == ["lancelot@example.com"]
    assert f"{settings.APP_URL}/claim/" in email.body
    assert len(_rejoin_emails(lancelot)) == 1

    # Rejoining ends the absence; a second absence sends again, once.
    with django_capture_on_commit_callbacks(execute=True):
        member_guild_join(discord_id=ARTHUR, now=now + timedelta(days=1))
        member_guild_leave(discord_id=ARTHUR, now=now + timedelta(days=2))
        member_guild_leave(discord_id=ARTHUR, now=now + timedelta(days=3))
    assert len(_rejoin_emails(lancelot)) == 2
    assert len(mail.outbox) == 2


@pytest.mark.parametrize("state", ["canceled", "revoked", "debtor"])
def test_members_who_are_not_entitled_get_no_email(
    discord, lancelot, state, django_capture_on_commit_callbacks
):
    now = timezone.now()
    if state == "canceled":
        personas.set_status(lancelot.subscription_id, "canceled")
    elif state == "revoked":
        Member.objects.filter(pk=lancelot.pk).update(override=Override.REVOKED)
    else:
        from billing.models import FailureEpisode

        personas.set_status(lancelot.subscription_id, "past_due")
        FailureEpisode.objects.create(
            subscription_id=lancelot.subscription_id,
            member=lancelot,
            opened_at=now - timedelta(days=3),
            grace_ends_at=now - timedelta(days=1),
            debtor_at=now - timedelta(days=1),
            removal_due_at=now + timedelta(days=29),
        )
    with django_capture_on_commit_callbacks(execute=True):
        assert member_guild_leave(discord_id=ARTHUR, now=now)
    assert _rejoin_emails(lancelot) == [] and mail.outbox == []
    assert Member.objects.get(pk=lancelot.pk).in_guild is False


def test_the_claim_page_takes_a_linked_member_back_into_the_guild(
    client, discord, lancelot, django_capture_on_commit_callbacks
):
    member_guild_leave(discord_id=ARTHUR, now=timezone.now())
    client.force_login(lancelot.user)
    page = client.get("/claim/")
    assert b"Rejoin the server" in page.content

    response = client.post("/claim/")
    assert response.status_code == 302 and "scope=identify+guilds.join" in response["Location"]
    back = authorize(response["Location"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(CALLBACK, back)

    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    # Added through guilds.join with the role they are entitled to.
    assert discord.member_roles(ARTHUR) == [ROLE_IDS["lord"]]
    lancelot.refresh_from_db()
    assert lancelot.discord_id == ARTHUR and lancelot.in_guild
    assert not AuditLog.objects.filter(action="discord_linked").exists()  # same link, kept


def test_rejoining_with_another_discord_account_is_refused(client, discord, lancelot):
    member_guild_leave(discord_id=ARTHUR, now=timezone.now())
    discord.set_oauth_user(GUINEVERE)
    client.force_login(lancelot.user)
    back = authorize(client.post("/claim/")["Location"])
    response = client.get(CALLBACK, back)
    assert response.status_code == 400
    assert b"linked to another Discord account" in response.content
    assert discord.member_roles(GUINEVERE) is None
    assert Member.objects.get(pk=lancelot.pk).discord_id == ARTHUR


def test_a_member_who_is_in_the_guild_is_not_sent_to_discord(client, discord, lancelot):
    Member.objects.filter(pk=lancelot.pk).update(in_guild=True)
    client.force_login(lancelot.user)
    assert b"Rejoin the server" not in client.get("/claim/").content
    response = client.post("/claim/")
    assert response["Location"] == "/claim/"
    assert discord.requests() == []
