"""Introductions: the rule that decides whether a message counts, and the services that record
the outcome.

A linked Squire becomes Knight or Lord by posting a top-level message of at least
``INTRODUCTION_MIN_LENGTH`` characters in the introductions channel (an edit that reaches the
length counts too). A message that is too short earns one guidance DM per cooldown window.
Everything else (bots, replies, threads, other channels, unknown authors) is ignored and writes
nothing. The bot only reports facts; roles change through ``role_sync_request`` and messages go
through the outbox, both after commit.

Introductions posted while no bot is connected reach no event handler. On every connect (and
resume) the bot runs ``introductions_catch_up``: it reads #introductions after the newest
message it has handled (a ``ChannelCursor``), oldest first, and applies the same rules to what
it missed, with each message's current content (so an edit made meanwhile counts).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from billing.roles import member_expected_role
from discordsync.client import DiscordClient, DiscordError, get_client
from discordsync.models import ChannelCursor
from members.models import ManagedRole, Member
from members.sync import role_sync_request
from ops.models import AuditAction, AuditActor, GatewayConfig
from ops.services import audit_record, notification_enqueue

log = structlog.get_logger(__name__)

# Discord message type 19 is a reply; type 0 is a plain message.
MESSAGE_TYPE_REPLY = 19
INTRO_REACTION = "\N{PARTY POPPER}"

# Catch-up bounds: Discord lists at most 100 messages per request; one pass reads at most
# 5,000 (the next pass goes on from the mark). Without a mark (the very first connect) it
# looks back a week rather than through the channel's whole history.
CATCH_UP_PAGE = 100
CATCH_UP_MAX_PAGES = 50
CATCH_UP_FIRST_WINDOW = timedelta(days=7)
DISCORD_EPOCH_MS = 1_420_070_400_000


@dataclass(frozen=True)
class MessageFacts:
    """What the rule needs to know about one created or edited Discord message."""

    channel_id: str
    author_id: str
    author_is_bot: bool
    content: str
    message_type: int = 0
    has_reference: bool = False  # a reply or a forward points at another message
    in_thread: bool = False
    is_edit: bool = False


class Verdict(enum.Enum):
    IGNORED = "ignored"  # not a candidate at all: nothing is written
    TOO_SHORT = "too_short"  # a candidate that needs more words: guidance
    VALID = "valid"  # counts as an introduction


def classify_introduction(facts: MessageFacts) -> Verdict:
    """Decide what a message means for introductions, from the message alone.

    Whether the author is a linked, entitled, not yet introduced member is decided by the
    services below, which read the database.
    """
    if facts.author_is_bot:
        return Verdict.IGNORED
    if not settings.DISCORD_INTRODUCTIONS_CHANNEL_ID:
        return Verdict.IGNORED
    # A thread inside #introductions has its own channel id, so the id check covers it; the
    # explicit flag keeps the rule right even if a caller passes the parent id.
    if facts.in_thread or str(facts.channel_id) != str(settings.DISCORD_INTRODUCTIONS_CHANNEL_ID):
        return Verdict.IGNORED
    if facts.message_type == MESSAGE_TYPE_REPLY or facts.has_reference:
        return Verdict.IGNORED
    if len(facts.content.strip()) >= settings.INTRODUCTION_MIN_LENGTH:
        return Verdict.VALID
    return Verdict.TOO_SHORT


def is_valid_introduction(facts: MessageFacts) -> bool:
    return classify_introduction(facts) is Verdict.VALID


class Outcome(enum.Enum):
    IGNORED = "ignored"
    PROMOTED = "promoted"
    GUIDANCE_SENT = "guidance_sent"
    GUIDANCE_COOLDOWN = "guidance_cooldown"


def _candidate(discord_id: str, now: datetime) -> Member | None:
    """The linked member behind a Discord id if their introduction is still pending.

    Pending means the policy puts them at Squire right now: linked, entitled, not in Debtor,
    not revoked, not yet introduced (and introductions required).
    """
    member = Member.objects.select_related("team", "user").filter(discord_id=discord_id).first()
    if member is None or member.introduced_at is not None:
        return None
    if member_expected_role(member, now) != ManagedRole.SQUIRE:
        return None
    return member


def _display_name(member: Member) -> str:
    return member.discord_username or "friend"


@transaction.atomic
def introduction_record(*, discord_id: str, message_id: str, now: datetime) -> Outcome:
    """Record a valid introduction: promote once, welcome once, react after commit.

    The conditional UPDATE makes the create and edit events of the same message (and a second
    bot during a hand-over) promote exactly once.
    """
    member = _candidate(discord_id, now)
    if member is None:
        return Outcome.IGNORED
    claimed = Member.objects.filter(pk=member.pk, introduced_at__isnull=True).update(
        introduced_at=now, intro_message_id=message_id, updated_at=now
    )
    if claimed != 1:
        return Outcome.IGNORED
    member.introduced_at = now
    member.intro_message_id = message_id
    role = member_expected_role(member, now) or ""
    audit_record(
        actor_type=AuditActor.DISCORD,
        actor_id=discord_id,
        actor_label=_display_name(member),
        action=AuditAction.MEMBER_INTRODUCED,
        target=member,
        details={"message_id": message_id, "role": role},
        reason="introduction posted in the introductions channel",
    )
    role_sync_request(member_id=member.pk)
    notification_enqueue(
        kind="intro_welcome",
        channel="dm",
        recipient=discord_id,
        episode=f"intro:{message_id}",
        member=member,
        context={"role_name": settings.ROLE_NAMES.get(role, role)},
    )
    log.info("introduction_recorded", member_id=member.pk, message_id=message_id, role=role)
    return Outcome.PROMOTED


@transaction.atomic
def introduction_guidance_record(*, discord_id: str, message_id: str, now: datetime) -> Outcome:
    """A pending member posted something too short: one guidance DM per cooldown window."""
    member = _candidate(discord_id, now)
    if member is None:
        return Outcome.IGNORED
    cooldown = timedelta(hours=max(GatewayConfig.load().intro_guidance_cooldown_hours, 1))
    claimed = (
        Member.objects.filter(pk=member.pk, introduced_at__isnull=True)
        .filter(
            Q(intro_guidance_sent_at__isnull=True) | Q(intro_guidance_sent_at__lte=now - cooldown)
        )
        .update(intro_guidance_sent_at=now, updated_at=now)
    )
    if claimed != 1:
        return Outcome.GUIDANCE_COOLDOWN
    # The window index keys the outbox row, so a retried event inside the same window is a
    # no-op even if the timestamp guard above were bypassed.
    window = int(now.timestamp() // cooldown.total_seconds())
    notification_enqueue(
        kind="intro_guidance",
        channel="dm",
        recipient=discord_id,
        episode=f"window:{window}",
        member=member,
        context={"min_length": settings.INTRODUCTION_MIN_LENGTH},
    )
    log.info("introduction_guidance_queued", member_id=member.pk, message_id=message_id)
    return Outcome.GUIDANCE_SENT


def introduction_handle(*, facts: MessageFacts, message_id: str, now: datetime) -> Outcome:
    """Route one message to the right service; the bot's single entry point."""
    verdict = classify_introduction(facts)
    if verdict is Verdict.VALID:
        return introduction_record(discord_id=facts.author_id, message_id=message_id, now=now)
    if verdict is Verdict.TOO_SHORT:
        return introduction_guidance_record(
            discord_id=facts.author_id, message_id=message_id, now=now
        )
    return Outcome.IGNORED


# --- catch-up after the bot was offline -------------------------------------------------------


@dataclass
class CatchUp:
    """What one catch-up pass did; ``complete`` is False when it stopped early (an error or
    the page bound), so the caller runs it again."""

    read: int = 0
    promoted: int = 0
    complete: bool = True


def snowflake_at(moment: datetime) -> int:
    """The smallest Discord id of a message created at ``moment``."""
    return max(0, int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22


def introductions_cursor() -> int | None:
    """Id of the newest introductions message handled, or None before the first one."""
    return (
        ChannelCursor.objects.filter(channel_id=settings.DISCORD_INTRODUCTIONS_CHANNEL_ID)
        .values_list("last_message_id", flat=True)
        .first()
    )


def introductions_mark_handled(*, channel_id: str, message_id: str) -> None:
    """Move the catch-up mark forward to ``message_id`` (never back; other channels ignored)."""
    channel = settings.DISCORD_INTRODUCTIONS_CHANNEL_ID
    if not channel or str(channel_id) != str(channel):
        return
    newest = int(message_id)
    moved = ChannelCursor.objects.filter(channel_id=channel, last_message_id__lt=newest).update(
        last_message_id=newest
    )
    if not moved:
        ChannelCursor.objects.get_or_create(
            channel_id=channel, defaults={"last_message_id": newest}
        )


def message_facts_from_json(message: dict[str, Any]) -> MessageFacts:
    """Facts of a message as Discord's REST API lists it (the author is a user object)."""
    author = message.get("author") or {}
    return MessageFacts(
        channel_id=str(message.get("channel_id") or ""),
        author_id=str(author.get("id") or ""),
        author_is_bot=bool(author.get("bot")),
        content=message.get("content") or "",
        message_type=int(message.get("type") or 0),
        has_reference=message.get("message_reference") is not None,
    )


def _react(client: DiscordClient, message: dict[str, Any]) -> None:
    try:
        client.add_reaction(str(message["channel_id"]), str(message["id"]), INTRO_REACTION)
    except DiscordError as exc:
        # Cosmetic: the promotion stands.
        log.warning("intro_reaction_failed", message_id=message["id"], error=type(exc).__name__)


def introductions_catch_up(*, now: datetime, client: DiscordClient | None = None) -> CatchUp:
    """Handle what was posted in #introductions since the newest message handled.

    Oldest first, each message exactly as a live create event would be (``introduction_handle``,
    then the 🎉 reaction after a promotion), moving the mark after each one, so an interrupted
    pass resumes where it stopped and a repeated pass repeats nothing.
    """
    result = CatchUp()
    channel = settings.DISCORD_INTRODUCTIONS_CHANNEL_ID
    if not channel:
        return result
    client = client or get_client()
    mark = introductions_cursor()
    after = str(mark if mark is not None else snowflake_at(now - CATCH_UP_FIRST_WINDOW))
    try:
        for _ in range(CATCH_UP_MAX_PAGES):
            page = client.channel_messages_after(channel, after=after, limit=CATCH_UP_PAGE)
            for message in page:
                outcome = introduction_handle(
                    facts=message_facts_from_json(message), message_id=message["id"], now=now
                )
                if outcome is Outcome.PROMOTED:
                    result.promoted += 1
                    _react(client, message)
                introductions_mark_handled(channel_id=channel, message_id=message["id"])
                result.read += 1
                after = message["id"]
            if len(page) < CATCH_UP_PAGE:
                break
        else:
            result.complete = False
    except DiscordError as exc:
        result.complete = False
        log.warning("introductions_catch_up_failed", error=type(exc).__name__, read=result.read)
    log.info(
        "introductions_caught_up",
        read=result.read,
        promoted=result.promoted,
        complete=result.complete,
    )
    return result
