"""Introductions posted while no bot was connected: the catch-up the bot runs on connect.

The fake Discord keeps every message posted while no gateway client is connected; the catch-up
reads #introductions through the project's REST client over HTTP and applies the live rules.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from discordsync.introductions import (
    CATCH_UP_PAGE,
    introductions_catch_up,
    introductions_cursor,
    introductions_mark_handled,
)
from fakes.discord.seed import CHANNEL_INTRODUCTIONS_ID, LANCELOT_ID, ROLE_LORD_ID, ROLE_SQUIRE_ID
from members.models import Member
from ops.models import Notification
from tests import personas

pytestmark = pytest.mark.django_db

PERCIVAL = "700000000000000021"
GAWAIN = "700000000000000022"
BORS = "700000000000000023"


@pytest.fixture
def squires(discord) -> dict[str, Member]:
    """Three linked Squires who are in the guild with the Squire role."""
    members = {}
    for name, discord_id in (("percival", PERCIVAL), ("gawain", GAWAIN), ("bors", BORS)):
        discord.add_user(id=discord_id, username=name, in_guild=True, roles=[ROLE_SQUIRE_ID])
        members[name] = personas.member(name, discord_id=discord_id)
    return members


def _catch_up(capture) -> object:
    with capture(execute=True):
        return introductions_catch_up(now=timezone.now())


def _sent(kind: str, recipient: str) -> int:
    return Notification.objects.filter(kind=kind, recipient=recipient).count()


def test_an_introduction_posted_while_offline_promotes_reacts_and_welcomes_once(
    discord, squires, django_capture_on_commit_callbacks
):
    assert discord.connected_sessions() == []  # no bot: nobody saw these live
    intro = discord.post_message(CHANNEL_INTRODUCTIONS_ID, PERCIVAL, "I am Percival. " + "p" * 90)

    result = _catch_up(django_capture_on_commit_callbacks)

    assert result.complete and result.read == 1 and result.promoted == 1
    assert discord.member_roles(PERCIVAL) == [ROLE_LORD_ID]
    assert list(discord.reactions(intro["id"])) == ["🎉"]
    (welcome,) = discord.dms_for(PERCIVAL)
    assert "Thanks for introducing yourself" in welcome["content"]
    assert Member.objects.get(pk=squires["percival"].pk).intro_message_id == intro["id"]
    assert introductions_cursor() == int(intro["id"])

    # Connecting again repeats nothing: no second read of the same message, no second DM.
    discord.clear_requests()
    again = _catch_up(django_capture_on_commit_callbacks)
    assert again.read == 0 and again.promoted == 0
    assert len(discord.dms_for(PERCIVAL)) == 1
    (listing,) = discord.requests(route="channel_messages_list")
    assert listing["query"]["after"] == intro["id"]


def test_missed_messages_follow_the_live_rules(
    discord, squires, django_capture_on_commit_callbacks
):
    short = discord.post_message(CHANNEL_INTRODUCTIONS_ID, GAWAIN, "hi")
    discord.post_message(CHANNEL_INTRODUCTIONS_ID, GAWAIN, "still short")
    anchor = discord.post_message(CHANNEL_INTRODUCTIONS_ID, LANCELOT_ID, "welcome all")
    discord.post_message(CHANNEL_INTRODUCTIONS_ID, BORS, "b" * 150, message_reference=anchor["id"])
    discord.post_message(CHANNEL_INTRODUCTIONS_ID, BORS, "b" * 150, thread=True)
    # Edited while offline: the current content is what counts.
    edited = discord.post_message(CHANNEL_INTRODUCTIONS_ID, PERCIVAL, "Hello!")
    discord.edit_message(edited["id"], "Hello! " + "p" * 100)

    result = _catch_up(django_capture_on_commit_callbacks)

    assert result.promoted == 1
    assert discord.member_roles(PERCIVAL) == [ROLE_LORD_ID]
    assert list(discord.reactions(edited["id"])) == ["🎉"]
    # Too short twice: one guidance DM (per 24 h), no role, no reaction.
    assert _sent("intro_guidance", GAWAIN) == 1
    assert discord.member_roles(GAWAIN) == [ROLE_SQUIRE_ID]
    assert discord.reactions(short["id"]) == {}
    # A reply and a thread message never count.
    assert discord.member_roles(BORS) == [ROLE_SQUIRE_ID]
    assert Member.objects.get(pk=squires["bors"].pk).intro_guidance_sent_at is None


def test_catch_up_pages_through_more_than_one_page(
    discord, squires, django_capture_on_commit_callbacks
):
    for n in range(CATCH_UP_PAGE + 20):
        discord.post_message(CHANNEL_INTRODUCTIONS_ID, LANCELOT_ID, f"chatter {n}")
    intro = discord.post_message(CHANNEL_INTRODUCTIONS_ID, BORS, "b" * 120)
    discord.clear_requests()

    result = _catch_up(django_capture_on_commit_callbacks)

    assert result.complete and result.read == CATCH_UP_PAGE + 21 and result.promoted == 1
    assert discord.member_roles(BORS) == [ROLE_LORD_ID]
    listings = discord.requests(route="channel_messages_list")
    assert [r["query"]["limit"] for r in listings] == ["100", "100"]
    assert introductions_cursor() == int(intro["id"])


def test_messages_the_bot_already_handled_live_are_not_read_again(
    discord, squires, django_capture_on_commit_callbacks
):
    seen_live = discord.post_message(CHANNEL_INTRODUCTIONS_ID, GAWAIN, "too short, seen live")
    introductions_mark_handled(channel_id=CHANNEL_INTRODUCTIONS_ID, message_id=seen_live["id"])
    # An older id never moves the mark back.
    introductions_mark_handled(channel_id=CHANNEL_INTRODUCTIONS_ID, message_id="1")
    # Messages of other channels (a thread has its own id) never move it.
    introductions_mark_handled(channel_id="400000000000000004", message_id=str(10**18))
    missed = discord.post_message(CHANNEL_INTRODUCTIONS_ID, PERCIVAL, "p" * 100)

    result = _catch_up(django_capture_on_commit_callbacks)

    assert result.read == 1 and result.promoted == 1
    assert _sent("intro_guidance", GAWAIN) == 0
    assert introductions_cursor() == int(missed["id"])


def test_without_a_mark_the_first_connect_reads_a_bounded_recent_window(
    discord, squires, django_capture_on_commit_callbacks
):
    intro = discord.post_message(CHANNEL_INTRODUCTIONS_ID, PERCIVAL, "p" * 100)
    discord.clear_requests()
    with django_capture_on_commit_callbacks(execute=True):
        # Eight days on, the message is older than the first connect's window.
        late = introductions_catch_up(now=timezone.now() + timedelta(days=8))
    assert late.read == 0 and discord.member_roles(PERCIVAL) == [ROLE_SQUIRE_ID]
    assert int(intro["id"]) > 0
    result = _catch_up(django_capture_on_commit_callbacks)
    assert result.promoted == 1
