"""Entities of the fake Discord and their JSON, shaped as Discord's API v10 sends them.

Fields a real payload carries but nothing in this project reads are still present with
Discord's neutral values, so code written against the fake works against Discord; fields
Discord omits (e.g. `bot` on human users) are omitted here too, so code that would crash on
Discord crashes on the fake.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DISCORD_EPOCH_MS = 1420070400000

CHANNEL_GUILD_TEXT = 0
CHANNEL_DM = 1
CHANNEL_PUBLIC_THREAD = 11

MESSAGE_DEFAULT = 0
MESSAGE_REPLY = 19


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Snowflakes:
    """Time-ordered ids, like Discord's (ms since 2015 shifted left 22 bits)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        value = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        value = max(value, self._last + 1)
        self._last = value
        return str(value)


class DiscordError(Exception):
    """An error answer in Discord's JSON shape: `{"message": ..., "code": ...}`."""

    def __init__(
        self, status: int, message: str, code: int = 0, *, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {message} ({code})")
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code, **self.extra}


def unknown_guild() -> DiscordError:
    return DiscordError(404, "Unknown Guild", 10004)


def unknown_channel() -> DiscordError:
    return DiscordError(404, "Unknown Channel", 10003)


def unknown_member() -> DiscordError:
    return DiscordError(404, "Unknown Member", 10007)


def unknown_message() -> DiscordError:
    return DiscordError(404, "Unknown Message", 10008)


def unknown_role() -> DiscordError:
    return DiscordError(404, "Unknown Role", 10011)


def unknown_user() -> DiscordError:
    return DiscordError(404, "Unknown User", 10013)


def missing_permissions() -> DiscordError:
    return DiscordError(403, "Missing Permissions", 50013)


def cannot_dm() -> DiscordError:
    return DiscordError(403, "Cannot send messages to this user", 50007)


def invalid_form(field_name: str, code: str, message: str) -> DiscordError:
    return DiscordError(
        400,
        "Invalid Form Body",
        50035,
        extra={"errors": {field_name: {"_errors": [{"code": code, "message": message}]}}},
    )


@dataclass(slots=True)
class User:
    id: str
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None
    email: str | None = None
    # Fake-only switches (not part of the payload):
    dms_closed: bool = False
    banned: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": self.avatar,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "primary_guild": None,
        }
        if self.bot:
            data["bot"] = True
        return data

    def to_private_json(self, *, with_email: bool) -> dict[str, Any]:
        """`GET /users/@me`: the user's own view, email only with the `email` scope."""
        data = self.to_json()
        data.update({"mfa_enabled": False, "locale": "en-US", "premium_type": 0})
        if with_email:
            data["email"] = self.email
            data["verified"] = self.email is not None
        return data


@dataclass(slots=True)
class Member:
    user: User
    roles: list[str]
    joined_at: str
    nick: str | None = None
    pending: bool = False

    def to_json(self, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": list(self.roles),
            "joined_at": self.joined_at,
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "pending": self.pending,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.to_json()
        return data


@dataclass(slots=True)
class Role:
    id: str
    name: str
    position: int
    color: int = 0
    permissions: int = 0
    bot_id: str | None = None  # set on a bot's own (managed) role
    hoist: bool = False
    mentionable: bool = False

    @property
    def managed(self) -> bool:
        return self.bot_id is not None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": None,
            "color": self.color,
            "colors": {
                "primary_color": self.color,
                "secondary_color": None,
                "tertiary_color": None,
            },
            "hoist": self.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": self.bot_id}
        return data


@dataclass(slots=True)
class Channel:
    id: str
    type: int
    name: str | None = None
    guild_id: str | None = None
    position: int = 0
    parent_id: str | None = None  # threads: the channel they live in
    owner_id: str | None = None  # threads: who started it
    recipient_id: str | None = None  # DMs: the human on the other side
    topic: str | None = None
    last_message_id: str | None = None
    message_count: int = 0
    created_at: str = field(default_factory=now_iso)

    def to_json(self, *, recipient: User | None = None) -> dict[str, Any]:
        if self.type == CHANNEL_DM:
            return {
                "id": self.id,
                "type": CHANNEL_DM,
                "last_message_id": self.last_message_id,
                "flags": 0,
                "recipients": [recipient.to_json()] if recipient else [],
            }
        data: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "guild_id": self.guild_id,
            "name": self.name,
            "parent_id": self.parent_id,
            "last_message_id": self.last_message_id,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if self.type == CHANNEL_PUBLIC_THREAD:
            data.update(
                {
                    "owner_id": self.owner_id,
                    "message_count": self.message_count,
                    "total_message_sent": self.message_count,
                    "member_count": 1,
                    "thread_metadata": {
                        "archived": False,
                        "auto_archive_duration": 1440,
                        "archive_timestamp": self.created_at,
                        "locked": False,
                        "create_timestamp": self.created_at,
                    },
                }
            )
        else:
            data.update(
                {
                    "position": self.position,
                    "topic": self.topic,
                    "nsfw": False,
                    "permission_overwrites": [],
                    "default_auto_archive_duration": 1440,
                }
            )
        return data


@dataclass(slots=True)
class Message:
    id: str
    channel_id: str
    author_id: str
    content: str
    timestamp: str
    guild_id: str | None = None
    type: int = MESSAGE_DEFAULT
    edited_timestamp: str | None = None
    reference: dict[str, Any] | None = None
    embeds: list[dict[str, Any]] = field(default_factory=list)
    nonce: str | int | None = None
    # emoji key ("🎉" or "name:id") -> ids of the users who reacted, in order
    reactions: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class GatewaySession:
    """One identified gateway session; survives a dropped socket so it can be RESUMEd."""

    session_id: str
    intents: int
    shard: list[int] | None
    created_at: float = field(default_factory=time.time)
    seq: int = 0
    connected: bool = False
    resumable: bool = True
    resume_count: int = 0
    heartbeats: int = 0
    last_heartbeat_at: float | None = None
    buffer: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5000))
    evicted_through: int = 0  # the newest seq that fell out of `buffer`
    # Delivers a payload to the socket currently attached (thread-safe); None when detached.
    sink: Callable[[dict[str, Any]], None] | None = None
    connection_id: int | None = None

    def deliver(self, event: str, data: dict[str, Any], *, replayable: bool = True) -> None:
        """Number the event, keep it for RESUME (unless not `replayable`), send it."""
        self.seq += 1
        payload = {"op": 0, "t": event, "s": self.seq, "d": data}
        if replayable:
            if self.buffer.maxlen is not None and len(self.buffer) == self.buffer.maxlen:
                self.evicted_through = self.buffer[0]["s"]
            self.buffer.append(payload)
        if self.sink is not None:
            self.sink(payload)

    def missed_since(self, seq: int) -> list[dict[str, Any]] | None:
        """Events after `seq`, or None when the buffer no longer reaches back that far."""
        if seq < self.evicted_through:
            return None
        return [p for p in self.buffer if p["s"] > seq]

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "connected": self.connected,
            "resumable": self.resumable,
            "intents": self.intents,
            "shard": self.shard,
            "seq": self.seq,
            "resume_count": self.resume_count,
            "heartbeats": self.heartbeats,
            "last_heartbeat_at": self.last_heartbeat_at,
            "created_at": self.created_at,
        }


connection_ids = itertools.count(1)
