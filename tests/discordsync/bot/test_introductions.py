"""Introduction rules (pure) and the services that record an introduction or send guidance."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from discordsync.introductions import (
    MessageFacts,
    Outcome,
    Verdict,
    classify_introduction,
    introduction_handle,
    is_valid_introduction,
)
from members.models import Member
from ops.models import AuditLog, GatewayConfig, Notification
from tests import personas
from tests.personas import SQUIRE_DISCORD_ID

INTRO_CHANNEL = "400000000000000001"
MIN = 100


def facts(content: str = "x" * MIN, **changes) -> MessageFacts:
    values = {
        "channel_id": INTRO_CHANNEL,
        "author_id": SQUIRE_DISCORD_ID,
        "author_is_bot": False,
        "content": content,
    }
    values.update(changes)
    return MessageFacts(**values)


def test_sandbox_channel_is_the_one_the_rule_reads():
    assert settings.DISCORD_INTRODUCTIONS_CHANNEL_ID == INTRO_CHANNEL
    assert settings.INTRODUCTION_MIN_LENGTH == MIN


@pytest.mark.parametrize(
    ("case", "message", "verdict"),
    [
        ("exactly 100 characters", facts("a" * 100), Verdict.VALID),
        ("99 characters", facts("a" * 99), Verdict.TOO_SHORT),
        ("long text with inner spaces", facts("word " * 25), Verdict.VALID),
        (
            "99 characters padded with whitespace",
            facts("  \n" + "a" * 99 + "\t  "),
            Verdict.TOO_SHORT,
        ),
        ("whitespace only", facts(" " * 150), Verdict.TOO_SHORT),
        ("reply (type 19)", facts("a" * 150, message_type=19), Verdict.IGNORED),
        ("message referencing another", facts("a" * 150, has_reference=True), Verdict.IGNORED),
        ("in a thread", facts("a" * 150, in_thread=True), Verdict.IGNORED),
        ("thread channel id", facts("a" * 150, channel_id="400000000000000099"), Verdict.IGNORED),
        ("bot author", facts("a" * 150, author_is_bot=True), Verdict.IGNORED),
        ("other channel", facts("a" * 150, channel_id="400000000000000004"), Verdict.IGNORED),
        ("edit reaching 100", facts("a" * 100, is_edit=True), Verdict.VALID),
        ("edit still short", facts("a" * 40, is_edit=True), Verdict.TOO_SHORT),
        ("short reply", facts("a" * 10, message_type=19), Verdict.IGNORED),
    ],
)
def test_classify_introduction(case, message, verdict):
    assert classify_introduction(message) is verdict, case
    assert is_valid_introduction(message) is (verdict is Verdict.VALID)


def test_threshold_follows_the_setting(settings):
    settings.INTRODUCTION_MIN_LENGTH = 20
    assert is_valid_introduction(facts("a" * 20))
    assert not is_valid_introduction(facts("a" * 19))


def _outbox(kind: str) -> list[Notification]:
    return list(Notification.objects.filter(kind=kind))


def test_valid_introduction_promotes_once_and_welcomes_once(
    squire, django_capture_on_commit_callbacks
):
    now = timezone.now()
    with django_capture_on_commit_callbacks() as callbacks:
        outcome = introduction_handle(facts=facts("a" * 120), message_id="900", now=now)
    assert outcome is Outcome.PROMOTED
    member = Member.objects.get(pk=squire.pk)
    assert member.introduced_at == now
    assert member.intro_message_id == "900"
    welcome = _outbox("intro_welcome")
    assert [(n.channel, n.recipient) for n in welcome] == [("dm", SQUIRE_DISCORD_ID)]
    assert welcome[0].context["role_name"] == settings.ROLE_NAMES["lord"]
    audit = AuditLog.objects.get(action="member.introduced")
    assert audit.target_id == str(squire.pk)
    assert audit.details["role"] == "lord"
    # role sync + welcome delivery, both after commit
    assert len(callbacks) == 2

    # The edit event of the same message (or a repost) changes nothing more.
    later = now + timedelta(minutes=1)
    with django_capture_on_commit_callbacks() as callbacks:
        again = introduction_handle(
            facts=facts("b" * 130, is_edit=True), message_id="900", now=later
        )
    assert again is Outcome.IGNORED
    assert Member.objects.get(pk=squire.pk).introduced_at == now
    assert len(_outbox("intro_welcome")) == 1
    assert callbacks == []


def test_edit_that_reaches_the_length_promotes(squire, django_capture_on_commit_callbacks):
    now = timezone.now()
    with django_capture_on_commit_callbacks():
        short = introduction_handle(facts=facts("hi all"), message_id="901", now=now)
        edited = introduction_handle(
            facts=facts("hi all " + "a" * 100, is_edit=True), message_id="901", now=now
        )
    assert (short, edited) == (Outcome.GUIDANCE_SENT, Outcome.PROMOTED)
    assert Member.objects.get(pk=squire.pk).intro_message_id == "901"


def test_too_short_sends_guidance_once_per_cooldown(squire, django_capture_on_commit_callbacks):
    now = timezone.now()
    with django_capture_on_commit_callbacks():
        first = introduction_handle(facts=facts("a" * 99), message_id="1", now=now)
        second = introduction_handle(
            facts=facts("a" * 50), message_id="2", now=now + timedelta(hours=23)
        )
    assert (first, second) == (Outcome.GUIDANCE_SENT, Outcome.GUIDANCE_COOLDOWN)
    assert len(_outbox("intro_guidance")) == 1
    assert Member.objects.get(pk=squire.pk).introduced_at is None

    with django_capture_on_commit_callbacks():
        third = introduction_handle(
            facts=facts("a" * 50), message_id="3", now=now + timedelta(hours=24, minutes=1)
        )
    assert third is Outcome.GUIDANCE_SENT
    assert len(_outbox("intro_guidance")) == 2


def test_guidance_cooldown_is_a_database_setting(squire, django_capture_on_commit_callbacks):
    config = GatewayConfig.load()
    config.intro_guidance_cooldown_hours = 2
    config.save()
    now = timezone.now()
    with django_capture_on_commit_callbacks():
        introduction_handle(facts=facts("short"), message_id="1", now=now)
        later = introduction_handle(
            facts=facts("short"), message_id="2", now=now + timedelta(hours=2, seconds=1)
        )
    assert later is Outcome.GUIDANCE_SENT


@pytest.mark.parametrize(
    "message",
    [
        facts("a" * 150, message_type=19),
        facts("a" * 150, in_thread=True),
        facts("a" * 150, author_is_bot=True),
        facts("a" * 150, channel_id="400000000000000004"),
        facts("a" * 10, channel_id="400000000000000004"),
    ],
    ids=["reply", "thread", "bot", "other-channel", "short-other-channel"],
)
def test_ignored_messages_write_nothing(squire, message, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        outcome = introduction_handle(facts=message, message_id="5", now=timezone.now())
    assert outcome is Outcome.IGNORED
    member = Member.objects.get(pk=squire.pk)
    assert (member.introduced_at, member.intro_guidance_sent_at) == (None, None)
    assert not Notification.objects.exists()
    assert not AuditLog.objects.exists()
    assert callbacks == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "content"),
    [("unknown user", "a" * 150), ("unknown user", "short")],
)
def test_unknown_authors_are_ignored(who, content, django_capture_on_commit_callbacks):
    personas.member("unlinked", discord_id=None)
    with django_capture_on_commit_callbacks() as callbacks:
        outcome = introduction_handle(
            facts=facts(content, author_id="799999999999999999"), message_id="6", now=timezone.now()
        )
    assert outcome is Outcome.IGNORED, who
    assert not Notification.objects.exists()
    assert callbacks == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "introduced"),
    [("canceled", False), ("unpaid", False), ("active", True)],
    ids=["cancelled", "unpaid", "already-introduced"],
)
def test_members_who_are_not_pending_squires_are_ignored(
    status, introduced, django_capture_on_commit_callbacks
):
    earlier = timezone.now() - timedelta(days=3)
    personas.member(
        "percival",
        discord_id=SQUIRE_DISCORD_ID,
        status=status,
        introduced_at=earlier if introduced else None,
    )
    with django_capture_on_commit_callbacks():
        long = introduction_handle(facts=facts("a" * 150), message_id="7", now=timezone.now())
        short = introduction_handle(facts=facts("a" * 5), message_id="8", now=timezone.now())
    assert (long, short) == (Outcome.IGNORED, Outcome.IGNORED)
    member = Member.objects.get(discord_id=SQUIRE_DISCORD_ID)
    assert member.introduced_at == (earlier if introduced else None)
    assert not Notification.objects.exists()
