"""Outbox delivery to Discord (DMs and the admin channel) against the fake Discord over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from fakes.discord import seed as fake_seed
from fakes.discord.server import FakeDiscordServer
from members.models import Member, User
from ops.models import Notification
from ops.services import notification_enqueue
from ops.tasks import deliver_due_notifications

pytestmark = pytest.mark.django_db(transaction=True)

LANCELOT = fake_seed.LANCELOT_ID  # in the guild
ADMIN_CHANNEL = fake_seed.CHANNEL_ADMIN_ALERTS_ID


@pytest.fixture(scope="module")
def discord_server() -> Iterator[FakeDiscordServer]:
    with FakeDiscordServer() as server:
        yield server


@pytest.fixture
def discord(discord_server, settings):
    discord_server.state.reset()
    for name, value in discord_server.settings().items():
        setattr(settings, name, value)
    settings.DISCORD_ADMIN_CHANNEL_ID = ADMIN_CHANNEL
    settings.DISCORD_TIMEOUT_SECONDS = 5.0
    return discord_server.state


@pytest.fixture
def lancelot() -> Member:
    user = User.objects.create_user("lancelot@example.com", "pw-123456789")
    return Member.objects.create(user=user, discord_id=LANCELOT, discord_username="lancelot")


def test_dm_reaches_the_member(discord, lancelot):
    notification_enqueue(
        kind="intro_welcome",
        channel="dm",
        recipient=LANCELOT,
        episode="intro",
        member=lancelot,
        context={"role_name": "Knight"},
    )

    dms = discord.dms_for(LANCELOT)
    assert len(dms) == 1
    assert dms[0]["content"].startswith("Welcome, lancelot!")
    assert "as Knight" in dms[0]["content"]
    assert Notification.objects.get().status == Notification.Status.SENT


def test_closed_dms_are_undeliverable_not_retried_and_block_nothing(discord, lancelot):
    discord.set_dms_closed(LANCELOT)
    grace = {"grace_ends_at": timezone.now() + timedelta(hours=48), "grace_hours": 48}
    for channel, recipient in (("dm", LANCELOT), ("email", "lancelot@example.com")):
        notification_enqueue(
            kind="payment_failed",
            channel=channel,
            recipient=recipient,
            episode="ep1",
            member=lancelot,
            context=grace,
        )

    dm = Notification.objects.get(channel="dm")
    assert dm.status == Notification.Status.UNDELIVERABLE
    assert "does not accept DMs" in dm.last_error
    assert dm.attempts == 1
    assert dm.next_attempt_at is None
    assert deliver_due_notifications() == 0
    assert discord.dms_for(LANCELOT) == []
    # The email for the same event went out regardless.
    assert Notification.objects.get(channel="email").status == Notification.Status.SENT
    assert len(mail.outbox) == 1


def test_discord_outage_is_retried_later(discord, lancelot):
    discord.add_fault("/channels", 502, method="POST", count=None, seconds=30)
    notification = notification_enqueue(
        kind="seat_revoked", channel="dm", recipient=LANCELOT, episode="t1", member=lancelot
    )
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert notification.next_attempt_at > timezone.now()
    assert settings_token_absent(notification.last_error)

    discord.reset()  # Discord recovers
    Notification.objects.filter(pk=notification.pk).update(next_attempt_at=timezone.now())
    deliver_due_notifications()

    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT
    assert notification.attempts == 2
    assert len(discord.dms_for(LANCELOT)) == 1


def settings_token_absent(text: str) -> bool:
    return fake_seed.Seed().bot_token not in text


def test_bot_alert_is_posted_to_the_admin_channel_once(discord):
    for _ in range(3):
        notification_enqueue(
            kind="bot_alert",
            channel="admin_channel",
            recipient=ADMIN_CHANNEL,
            episode="add_role:42",
            context={"summary": "Cannot add role Knight", "details": "403 Missing Permissions"},
        )

    posted = discord.channel_messages(ADMIN_CHANNEL)
    assert len(posted) == 1
    assert posted[0]["content"].startswith("**[The Revenue Council] Cannot add role Knight**")
    assert "403 Missing Permissions" in posted[0]["content"]
