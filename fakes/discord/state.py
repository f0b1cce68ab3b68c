"""The fake Discord's world and everything that changes it.

One `FakeDiscordState` holds the guild (roles, channels, threads, members), users, messages,
DM channels, OAuth codes and tokens, rate-limit buckets, injected faults, the request log and
the gateway sessions. The HTTP handlers (in the server's event-loop thread) and tests (in
their own thread) both call its methods; every method takes `self.lock`, so callers never
see a half-applied change. Gateway events are handed to each session's `sink`, which
schedules the websocket write on the server's loop, so dispatching from any thread is safe.
"""

from __future__ import annotations

import bisect
import copy
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .models import (
    CHANNEL_DM,
    CHANNEL_GUILD_TEXT,
    CHANNEL_PUBLIC_THREAD,
    MESSAGE_DEFAULT,
    MESSAGE_REPLY,
    Channel,
    DiscordError,
    GatewaySession,
    Member,
    Message,
    Role,
    Snowflakes,
    User,
    cannot_dm,
    invalid_form,
    missing_permissions,
    now_iso,
    unknown_channel,
    unknown_guild,
    unknown_member,
    unknown_message,
    unknown_role,
    unknown_user,
)
from .ratelimit import Fault, RateLimiter, normalise_api_path
from .seed import (
    APP_FLAG_GATEWAY_GUILD_MEMBERS_LIMITED,
    APP_FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED,
    EVERYONE_PERMISSIONS,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    PERM_ADMINISTRATOR,
    PERM_CREATE_INSTANT_INVITE,
    PERM_KICK_MEMBERS,
    PERM_MANAGE_ROLES,
    PRIVILEGED_INTENTS,
    SEED_MEMBERS_START_ID,
    Seed,
)

T = TypeVar("T")

MAX_MESSAGE_LENGTH = 2000
MAX_KEPT_SESSIONS = 20
EXPECTED_SCOPES = {"identify", "email", "guilds", "guilds.join", "guilds.members.read"}


class GatewayClose(Exception):
    """The gateway must close the socket with this code (e.g. 4004 bad token)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Auth:
    kind: str  # "bot" or "bearer"
    user_id: str
    scopes: frozenset[str] = frozenset()


@dataclass
class OAuthCode:
    user_id: str
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    expires_at: float  # monotonic


@dataclass
class OAuthToken:
    user_id: str
    scopes: frozenset[str]
    expires_at: float  # monotonic
    refresh_token: str


def _check_snowflake(value: Any, what: str) -> str:
    text = str(value)
    # Canonical digits only: ids are kept sorted as ints and looked up as str(int).
    if not text.isdigit() or text != str(int(text)):
        raise DiscordError(400, f"{what} must be a snowflake (digits), got {value!r}", 50035)
    return text


class FakeDiscordState:
    """The fake's whole world. Thread-safe; see the module docstring."""

    def __init__(self, seed: Seed | None = None) -> None:
        self.seed = seed or Seed()
        self.lock = threading.RLock()
        self._cond = threading.Condition(self.lock)
        self.snowflakes = Snowflakes()
        # Gateway bookkeeping survives `reset()`: the connected bot stays connected.
        self.sessions: dict[str, GatewaySession] = {}
        self.identify_count = 0
        self.resume_count = 0
        self.connections_open = 0
        self._load_world()

    # ----------------------------------------------------------------------------------
    # World set-up
    # ----------------------------------------------------------------------------------

    def _load_world(self) -> None:
        seed = self.seed
        self.config = copy.deepcopy(seed)  # control API tweaks this copy; reset restores
        self.application_id = seed.application_id
        self.guild_id = seed.guild_id
        self.guild_name = seed.guild_name
        self.owner_id = seed.owner_id
        self.users: dict[str, User] = {}
        self.members: dict[str, Member] = {}
        self._member_ids: list[int] = []  # sorted; the cursor index for list-members
        self.roles: dict[str, Role] = {}
        self.channels: dict[str, Channel] = {}
        self.messages: dict[str, Message] = {}
        self._channel_messages: dict[str, list[str]] = {}
        self.dm_channels: dict[str, str] = {}  # user id -> DM channel id
        self.oauth_codes: dict[str, OAuthCode] = {}
        self.oauth_tokens: dict[str, OAuthToken] = {}
        self.oauth_refresh: dict[str, str] = {}  # refresh token -> access token
        self.oauth_current_user: str | None = seed.oauth_current_user
        self.oauth_deny = False
        self.faults: list[Fault] = []
        self.ratelimiter = RateLimiter(seed.rate_limits, seed.global_rate_limit)
        self.request_log: deque[dict[str, Any]] = deque(maxlen=seed.request_log_size)
        self._request_seq = 0
        self.stats: dict[str, Any] = self._fresh_stats()
        self._last_all_members_request: float | None = None

        self.bot = User(id=seed.application_id, username=seed.bot_username, bot=True)
        self.users[self.bot.id] = self.bot

        self.roles[self.guild_id] = Role(
            id=self.guild_id, name="@everyone", position=0, permissions=EVERYONE_PERMISSIONS
        )
        ordered = [
            Role(
                id=_check_snowflake(r["id"], "role id"),
                name=r["name"],
                position=0,
                color=int(r.get("color", 0)),
                permissions=int(r.get("permissions", 0)),
                hoist=bool(r.get("hoist", False)),
                mentionable=bool(r.get("mentionable", False)),
            )
            for r in seed.roles
        ]
        bot_role = Role(
            id=seed.bot_role_id,
            name=seed.bot_username,
            position=0,
            permissions=seed.bot_permissions,
            bot_id=self.bot.id,
        )
        ordered.insert(len(ordered) if seed.bot_role_above else 0, bot_role)
        for position, role in enumerate(ordered, start=1):
            role.position = position
            self.roles[role.id] = role

        for position, c in enumerate(seed.channels):
            channel = Channel(
                id=_check_snowflake(c["id"], "channel id"),
                type=int(c.get("type", CHANNEL_GUILD_TEXT)),
                name=c["name"],
                guild_id=self.guild_id,
                position=int(c.get("position", position)),
                parent_id=c.get("parent_id"),
                topic=c.get("topic"),
            )
            self.channels[channel.id] = channel
            self._channel_messages[channel.id] = []

        self._insert_member(Member(user=self.bot, roles=[bot_role.id], joined_at=now_iso()))
        for u in seed.users:
            self._create_user(u)

    @staticmethod
    def _fresh_stats() -> dict[str, Any]:
        return {
            "requests": 0,
            "by_status": Counter(),
            "rate_limited": {"organic": 0, "forced": 0, "global": 0},
            # 401/403/429 count towards Discord's 10,000-per-10-minutes invalid request ban.
            "invalid_requests": 0,
        }

    def reset(self, *, reidentify: bool = False) -> None:
        """Back to the seeded world: users, guild, messages, OAuth, faults, log, counters.

        Gateway sessions stay connected, and a connected bot's cache then lags the reset
        world. With `reidentify`, connected sessions get INVALID_SESSION (not resumable):
        discord.py identifies again and rebuilds its cache from a fresh READY/GUILD_CREATE.
        """
        with self.lock:
            self._load_world()
            if reidentify:
                self.gateway_invalidate(resumable=False)
            self._changed()

    def _create_user(self, spec: dict[str, Any]) -> User:
        user_id = _check_snowflake(spec.get("id") or self.snowflakes.next(), "user id")
        if user_id in self.users:
            raise DiscordError(400, f"user {user_id} already exists", 0)
        username = spec.get("username") or f"user{user_id[-6:]}"
        user = User(
            id=user_id,
            username=username,
            global_name=spec.get("global_name", username.title()),
            bot=bool(spec.get("bot", False)),
            email=spec.get("email", f"{username}@example.com"),
            dms_closed=bool(spec.get("dms_closed", False)),
            banned=bool(spec.get("banned", False)),
        )
        self.users[user_id] = user
        if spec.get("in_guild") or spec.get("roles"):
            roles = [self._role(r).id for r in spec.get("roles", [])]
            self._insert_member(Member(user=user, roles=roles, joined_at=now_iso()))
        return user

    # ----------------------------------------------------------------------------------
    # Change notification (tests wait on it)
    # ----------------------------------------------------------------------------------

    def _changed(self) -> None:
        self._cond.notify_all()

    def wait_for(self, predicate: Callable[[FakeDiscordState], T], timeout: float = 5.0) -> T:
        """Block until `predicate(state)` is truthy (checked after every change); return it.

        Raises TimeoutError. The predicate runs under the state lock, so it may call any
        state method.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self)
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("fake Discord: condition not met in time")
                self._cond.wait(min(left, 0.1))

    # ----------------------------------------------------------------------------------
    # Lookups (callers hold the lock)
    # ----------------------------------------------------------------------------------

    def _guild(self, guild_id: str) -> None:
        if guild_id != self.guild_id:
            raise unknown_guild()

    def _user(self, user_id: str) -> User:
        user = self.users.get(str(user_id))
        if user is None:
            raise unknown_user()
        return user

    def _member(self, user_id: str) -> Member:
        member = self.members.get(str(user_id))
        if member is None:
            raise unknown_member()
        return member

    def _role(self, role_id: str) -> Role:
        role = self.roles.get(str(role_id))
        if role is None:
            raise unknown_role()
        return role

    def _channel(self, channel_id: str) -> Channel:
        channel = self.channels.get(str(channel_id))
        if channel is None:
            raise unknown_channel()
        return channel

    def _message(self, channel_id: str, message_id: str) -> Message:
        message = self.messages.get(str(message_id))
        if message is None or message.channel_id != str(channel_id):
            raise unknown_message()
        return message

    def _insert_member(self, member: Member) -> None:
        self.members[member.user.id] = member
        bisect.insort(self._member_ids, int(member.user.id))

    def _delete_member(self, user_id: str) -> Member:
        member = self.members.pop(user_id)
        ids = self._member_ids
        index = bisect.bisect_left(ids, int(user_id))
        del ids[index]
        return member

    # ----------------------------------------------------------------------------------
    # Role hierarchy and permissions
    # ----------------------------------------------------------------------------------

    def bot_top_position(self) -> int:
        with self.lock:
            return max((self.roles[r].position for r in self.members[self.bot.id].roles), default=0)

    def bot_permissions(self) -> int:
        with self.lock:
            perms = self.roles[self.guild_id].permissions
            for role_id in self.members[self.bot.id].roles:
                perms |= self.roles[role_id].permissions
            return perms

    def _bot_can(self, permission: int) -> bool:
        perms = self.bot_permissions()
        return bool(perms & PERM_ADMINISTRATOR or perms & permission)

    def _check_manageable(self, role: Role) -> None:
        """Discord: a bot may only grant or remove roles below its own highest role."""
        if not self._bot_can(PERM_MANAGE_ROLES):
            raise missing_permissions()
        if role.id == self.guild_id or role.managed or role.position >= self.bot_top_position():
            raise missing_permissions()

    def _check_kickable(self, member: Member) -> None:
        if not self._bot_can(PERM_KICK_MEMBERS) or member.user.id == self.owner_id:
            raise missing_permissions()
        top = max((self.roles[r].position for r in member.roles), default=0)
        if top >= self.bot_top_position():
            raise missing_permissions()

    def set_bot_role_position(self, position: int) -> None:
        """Move the bot's role to `position` (1 = lowest above @everyone), renumbering the
        others densely the way Discord does, and tell the gateway (GUILD_ROLE_UPDATE)."""
        with self.lock:
            bot_role = self.roles[self.config.bot_role_id]
            ordered = sorted(
                (r for r in self.roles.values() if r.id not in (self.guild_id, bot_role.id)),
                key=lambda r: (r.position, int(r.id)),
            )
            index = min(max(int(position), 1), len(ordered) + 1) - 1
            ordered.insert(index, bot_role)
            for new_position, role in enumerate(ordered, start=1):
                if role.position != new_position:
                    role.position = new_position
                    self.dispatch(
                        "GUILD_ROLE_UPDATE", {"guild_id": self.guild_id, "role": role.to_json()}
                    )
            self._changed()

    def set_bot_permissions(self, permissions: int) -> None:
        with self.lock:
            role = self.roles[self.config.bot_role_id]
            role.permissions = int(permissions)
            self.dispatch("GUILD_ROLE_UPDATE", {"guild_id": self.guild_id, "role": role.to_json()})
            self._changed()

    # ----------------------------------------------------------------------------------
    # JSON views
    # ----------------------------------------------------------------------------------

    def role_list_json(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.to_json() for r in sorted(self.roles.values(), key=lambda r: r.position)]

    def guild_channels_json(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                c.to_json()
                for c in self.channels.values()
                if c.guild_id == self.guild_id and c.type != CHANNEL_PUBLIC_THREAD
            ]

    def threads_json(self) -> list[dict[str, Any]]:
        with self.lock:
            return [c.to_json() for c in self.channels.values() if c.type == CHANNEL_PUBLIC_THREAD]

    def channel_json(self, channel: Channel) -> dict[str, Any]:
        recipient = self.users.get(channel.recipient_id or "")
        return channel.to_json(recipient=recipient)

    def guild_json(self, *, with_counts: bool = False) -> dict[str, Any]:
        with self.lock:
            data: dict[str, Any] = {
                "id": self.guild_id,
                "name": self.guild_name,
                "icon": None,
                "icon_hash": None,
                "splash": None,
                "discovery_splash": None,
                "owner_id": self.owner_id,
                "afk_channel_id": None,
                "afk_timeout": 300,
                "verification_level": 1,
                "default_message_notifications": 1,
                "explicit_content_filter": 0,
                "roles": self.role_list_json(),
                "emojis": [],
                "stickers": [],
                "features": [],
                "mfa_level": 0,
                "application_id": None,
                "system_channel_id": None,
                "system_channel_flags": 0,
                "rules_channel_id": None,
                "public_updates_channel_id": None,
                "safety_alerts_channel_id": None,
                "max_members": 500000,
                "vanity_url_code": None,
                "description": None,
                "banner": None,
                "premium_tier": 0,
                "premium_subscription_count": 0,
                "premium_progress_bar_enabled": False,
                "preferred_locale": "en-US",
                "nsfw_level": 0,
            }
            if with_counts:
                data["approximate_member_count"] = len(self.members)
                data["approximate_presence_count"] = 0
            return data

    def guild_create_json(self, *, large_threshold: int) -> dict[str, Any]:
        """GUILD_CREATE: the guild plus channels, threads and members. Like Discord, a
        guild above `large_threshold` members ships only the bot's own member and
        `large: true`, and clients fetch the rest with REQUEST_GUILD_MEMBERS."""
        with self.lock:
            count = len(self.members)
            large = count > large_threshold
            if large:
                members = [self.members[self.bot.id]]
            else:
                members = [self.members[str(i)] for i in self._member_ids]
            data = self.guild_json()
            data.update(
                {
                    "joined_at": self.members[self.bot.id].joined_at,
                    "large": large,
                    "unavailable": False,
                    "member_count": count,
                    "voice_states": [],
                    "members": [m.to_json() for m in members],
                    "channels": [
                        {k: v for k, v in c.items() if k != "guild_id"}
                        for c in self.guild_channels_json()
                    ],
                    "threads": self.threads_json(),
                    "presences": [],
                    "stage_instances": [],
                    "guild_scheduled_events": [],
                    "soundboard_sounds": [],
                }
            )
            return data

    def member_json(self, user_id: str) -> dict[str, Any] | None:
        with self.lock:
            member = self.members.get(str(user_id))
            return None if member is None else member.to_json()

    def list_members(self, *, after: int = 0, limit: int = 1) -> list[dict[str, Any]]:
        """Members with user id > `after`, ascending, at most `limit` (O(log n + limit))."""
        with self.lock:
            ids = self._member_ids
            start = bisect.bisect_right(ids, after)
            members = self.members
            return [members[str(i)].to_json() for i in ids[start : start + limit]]

    def message_json(self, message: Message, *, gateway: bool = False) -> dict[str, Any]:
        author = self.users[message.author_id]
        data: dict[str, Any] = {
            "id": message.id,
            "channel_id": message.channel_id,
            "author": author.to_json(),
            "content": message.content,
            "timestamp": message.timestamp,
            "edited_timestamp": message.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "mention_channels": [],
            "attachments": [],
            "embeds": message.embeds,
            "components": [],
            "pinned": False,
            "type": message.type,
            "flags": 0,
        }
        if message.nonce is not None:
            data["nonce"] = message.nonce
        if message.reactions:
            data["reactions"] = [
                {
                    "emoji": _emoji_json(key),
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": self.bot.id in users,
                    "me_burst": False,
                    "burst_me": False,
                    "burst_count": 0,
                    "burst_colors": [],
                }
                for key, users in message.reactions.items()
            ]
        if message.reference is not None:
            data["message_reference"] = {"type": 0, **message.reference}
            referenced = self.messages.get(message.reference.get("message_id", ""))
            data["referenced_message"] = (
                self.message_json(referenced) if referenced is not None else None
            )
        if message.guild_id is not None and gateway:
            # Gateway message events carry guild_id and the author's member (without user).
            data["guild_id"] = message.guild_id
            member = self.members.get(message.author_id)
            if member is not None:
                data["member"] = member.to_json(with_user=False)
        return data

    # ----------------------------------------------------------------------------------
    # Users and members (control API / tests; bot-side REST goes through the rest_* methods)
    # ----------------------------------------------------------------------------------

    def add_user(self, **spec: Any) -> dict[str, Any]:
        """Create a user: `id` (optional), `username`, `global_name`, `email`, `bot`,
        `in_guild`, `roles`, `dms_closed`, `banned`. Joining this way dispatches nothing."""
        with self.lock:
            user = self._create_user(spec)
            self._changed()
            return user.to_json()

    def user_json(self, user_id: str) -> dict[str, Any]:
        with self.lock:
            return self._user(user_id).to_json()

    def user_info(self, user_id: str) -> dict[str, Any]:
        """Everything about one user: payload, fake flags, membership and DMs received."""
        with self.lock:
            user = self._user(user_id)
            return {
                "user": user.to_json(),
                "email": user.email,
                "dms_closed": user.dms_closed,
                "banned": user.banned,
                "member": self.member_json(user.id),
                "dms": self.dms_for(user.id),
            }

    def set_user_flags(
        self, user_id: str, *, dms_closed: bool | None = None, banned: bool | None = None
    ) -> None:
        with self.lock:
            user = self._user(user_id)
            if dms_closed is not None:
                user.dms_closed = bool(dms_closed)
            if banned is not None:
                user.banned = bool(banned)
            self._changed()

    def set_dms_closed(self, user_id: str, closed: bool = True) -> None:
        self.set_user_flags(user_id, dms_closed=closed)

    def add_member(
        self, user_id: str, roles: Iterable[str] = (), *, dispatch: bool = True
    ) -> dict[str, Any]:
        """The user joins the guild (as via an invite) with `roles`; GUILD_MEMBER_ADD."""
        with self.lock:
            user = self._user(user_id)
            if user.id in self.members:
                raise DiscordError(400, f"user {user.id} is already a member", 0)
            member = Member(user=user, roles=[self._role(r).id for r in roles], joined_at=now_iso())
            self._insert_member(member)
            if dispatch:
                self.dispatch("GUILD_MEMBER_ADD", {**member.to_json(), "guild_id": self.guild_id})
            self._changed()
            return member.to_json()

    def remove_member(self, user_id: str, *, dispatch: bool = True) -> None:
        """The user leaves (or is kicked from) the guild; GUILD_MEMBER_REMOVE."""
        with self.lock:
            member = self._member(user_id)
            self._delete_member(member.user.id)
            if dispatch:
                self.dispatch(
                    "GUILD_MEMBER_REMOVE",
                    {"guild_id": self.guild_id, "user": member.user.to_json()},
                )
            self._changed()

    def set_member_roles(
        self, user_id: str, roles: Iterable[str], *, dispatch: bool = True
    ) -> dict[str, Any]:
        """Staff-style role change (no hierarchy check); GUILD_MEMBER_UPDATE if changed."""
        with self.lock:
            member = self._member(user_id)
            self._apply_roles(member, [self._role(r).id for r in roles], dispatch=dispatch)
            return member.to_json()

    def _apply_roles(self, member: Member, roles: list[str], *, dispatch: bool = True) -> bool:
        unique = list(dict.fromkeys(r for r in roles if r != self.guild_id))
        if set(unique) == set(member.roles):
            return False
        member.roles = unique
        if dispatch:
            self._member_updated(member)
        self._changed()
        return True

    def _member_updated(self, member: Member) -> None:
        self.dispatch("GUILD_MEMBER_UPDATE", {**member.to_json(), "guild_id": self.guild_id})
        self._changed()

    def member_roles(self, user_id: str) -> list[str] | None:
        with self.lock:
            member = self.members.get(str(user_id))
            return None if member is None else list(member.roles)

    def seed_members(
        self,
        count: int,
        role_ids: Iterable[str] = (),
        start_id: int | str | None = None,
    ) -> dict[str, Any]:
        """Add `count` users who are all guild members (ids from `start_id` up), fast:
        one sort instead of an insort each, no gateway events. For large-guild benchmarks."""
        with self.lock:
            roles = [self._role(r).id for r in role_ids]
            next_id = int(start_id) if start_id is not None else SEED_MEMBERS_START_ID
            if start_id is None and self._member_ids:
                next_id = max(next_id, self._member_ids[-1] + 1)
            joined_at = now_iso()
            added: list[int] = []
            while len(added) < count:
                user_id = str(next_id)
                next_id += 1
                if user_id in self.users:
                    continue
                user = User(id=user_id, username=f"member{user_id}", global_name=None)
                self.users[user_id] = user
                self.members[user_id] = Member(user=user, roles=list(roles), joined_at=joined_at)
                added.append(int(user_id))
            self._member_ids.extend(added)
            self._member_ids.sort()
            self._changed()
            return {
                "added": len(added),
                "first_id": str(added[0]) if added else None,
                "last_id": str(added[-1]) if added else None,
                "member_count": len(self.members),
            }

    # ----------------------------------------------------------------------------------
    # Bot REST operations (hierarchy and permission checks apply)
    # ----------------------------------------------------------------------------------

    def rest_add_member(
        self, guild_id: str, user_id: str, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """PUT /guilds/{g}/members/{u}: add with an OAuth token (`guilds.join`).
        Returns the member JSON if added (201), None if already a member (204)."""
        with self.lock:
            self._guild(guild_id)
            user = self._user(user_id)
            token = self._valid_token(str(body.get("access_token") or ""))
            if token is None or token.user_id != user.id or "guilds.join" not in token.scopes:
                raise DiscordError(403, "Invalid OAuth2 access token", 50025)
            if not self._bot_can(PERM_CREATE_INSTANT_INVITE):
                raise missing_permissions()
            if user.id in self.members:
                return None
            if user.banned:
                raise DiscordError(403, "The user is banned from this guild.", 40007)
            roles = [self._role(r) for r in body.get("roles") or []]
            for role in roles:
                self._check_manageable(role)
            member = Member(
                user=user,
                roles=[r.id for r in roles],
                joined_at=now_iso(),
                nick=body.get("nick"),
            )
            self._insert_member(member)
            self.dispatch("GUILD_MEMBER_ADD", {**member.to_json(), "guild_id": self.guild_id})
            self._changed()
            return member.to_json()

    def rest_add_role(self, guild_id: str, user_id: str, role_id: str) -> None:
        with self.lock:
            self._guild(guild_id)
            role = self._role(role_id)
            member = self._member(user_id)
            self._check_manageable(role)
            if role.id not in member.roles:
                self._apply_roles(member, [*member.roles, role.id])

    def rest_remove_role(self, guild_id: str, user_id: str, role_id: str) -> None:
        with self.lock:
            self._guild(guild_id)
            role = self._role(role_id)
            member = self._member(user_id)
            self._check_manageable(role)
            if role.id in member.roles:
                self._apply_roles(member, [r for r in member.roles if r != role.id])

    def rest_modify_member(
        self, guild_id: str, user_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """PATCH /guilds/{g}/members/{u}: `roles` (the full new list) and/or `nick`."""
        with self.lock:
            self._guild(guild_id)
            member = self._member(user_id)
            changed = False
            if "roles" in body:
                wanted = [self._role(r).id for r in body["roles"] or []]
                for role_id in set(wanted) ^ set(member.roles):
                    self._check_manageable(self.roles[role_id])
                changed = self._apply_roles(member, wanted, dispatch=False)
            if "nick" in body and body["nick"] != member.nick:
                member.nick = body["nick"]
                changed = True
            if changed:
                self._member_updated(member)
            return member.to_json()

    def rest_kick(self, guild_id: str, user_id: str) -> None:
        with self.lock:
            self._guild(guild_id)
            member = self._member(user_id)
            self._check_kickable(member)
            self.remove_member(member.user.id)

    def rest_open_dm(self, recipient_id: str) -> dict[str, Any]:
        with self.lock:
            user = self.users.get(str(recipient_id))
            if user is None or user.bot:
                raise DiscordError(400, "Invalid Recipient(s)", 50033)
            channel_id = self.dm_channels.get(user.id)
            if channel_id is None:
                channel = Channel(id=self.snowflakes.next(), type=CHANNEL_DM, recipient_id=user.id)
                self.channels[channel.id] = channel
                self._channel_messages[channel.id] = []
                self.dm_channels[user.id] = channel.id
                self._changed()
            return self.channel_json(self.channels[self.dm_channels[user.id]])

    def rest_send_message(self, channel_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /channels/{c}/messages as the bot (guild channel, thread or DM)."""
        with self.lock:
            channel = self._channel(channel_id)
            content = body.get("content") or ""
            embeds = body.get("embeds") or []
            if not isinstance(content, str):
                raise invalid_form("content", "BASE_TYPE_STRING", "Must be a string.")
            if not content and not embeds:
                raise DiscordError(400, "Cannot send an empty message", 50006)
            if len(content) > MAX_MESSAGE_LENGTH:
                raise invalid_form(
                    "content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
                )
            if channel.type == CHANNEL_DM:
                recipient = self.users[channel.recipient_id or ""]
                mutual = recipient.id in self.members
                if recipient.dms_closed or (self.config.dm_requires_mutual_guild and not mutual):
                    raise cannot_dm()
            reference = body.get("message_reference")
            if reference:
                self._message(reference.get("channel_id") or channel.id, reference["message_id"])
            message = self._store_message(
                channel,
                author_id=self.bot.id,
                content=content,
                embeds=list(embeds),
                reference=dict(reference) if reference else None,
                nonce=body.get("nonce"),
            )
            return self.message_json(message)

    def rest_get_message(self, channel_id: str, message_id: str) -> dict[str, Any]:
        with self.lock:
            self._channel(channel_id)
            return self.message_json(self._message(channel_id, message_id))

    def rest_list_messages(
        self, channel_id: str, *, after: int | None, before: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """GET /channels/{c}/messages as Discord answers it: always newest first; with
        ``after``, the ``limit`` messages right after it; with ``before``, the ``limit``
        right before it; else the latest ``limit``. Messages are kept whether or not a
        gateway client was connected when they were posted."""
        with self.lock:
            self._channel(channel_id)
            ids = self._channel_messages.get(str(channel_id), [])  # ascending snowflakes
            if after is not None:
                chosen = [m for m in ids if int(m) > after][:limit]
            elif before is not None:
                chosen = [m for m in ids if int(m) < before][-limit:]
            else:
                chosen = ids[-limit:]
            return [self.message_json(self.messages[m]) for m in reversed(chosen)]

    def rest_react(self, channel_id: str, message_id: str, emoji: str, *, add: bool) -> None:
        with self.lock:
            self._channel(channel_id)
            message = self._message(channel_id, message_id)
            if not emoji or (":" in emoji and not emoji.rsplit(":", 1)[1].isdigit()):
                raise DiscordError(400, "Unknown Emoji", 10014)
            users = message.reactions.setdefault(emoji, [])
            if add and self.bot.id not in users:
                users.append(self.bot.id)
                event = "MESSAGE_REACTION_ADD"
            elif not add and self.bot.id in users:
                users.remove(self.bot.id)
                event = "MESSAGE_REACTION_REMOVE"
            else:
                return
            if not users:
                del message.reactions[emoji]
            data: dict[str, Any] = {
                "user_id": self.bot.id,
                "channel_id": channel_id,
                "message_id": message_id,
                "emoji": _emoji_json(emoji),
                "burst": False,
                "type": 0,
            }
            if message.guild_id:
                data["guild_id"] = message.guild_id
                if add:
                    data["member"] = self.members[self.bot.id].to_json()
                    data["message_author_id"] = message.author_id
            self.dispatch(event, data)
            self._changed()

    # ----------------------------------------------------------------------------------
    # Messages
    # ----------------------------------------------------------------------------------

    def _store_message(
        self,
        channel: Channel,
        *,
        author_id: str,
        content: str,
        embeds: list[dict[str, Any]] | None = None,
        reference: dict[str, Any] | None = None,
        nonce: str | int | None = None,
    ) -> Message:
        message = Message(
            id=self.snowflakes.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=author_id,
            content=content,
            timestamp=now_iso(),
            type=MESSAGE_REPLY if reference else MESSAGE_DEFAULT,
            reference=reference,
            embeds=embeds or [],
            nonce=nonce,
        )
        if reference is not None and channel.guild_id:
            reference.setdefault("channel_id", channel.id)
            reference.setdefault("guild_id", channel.guild_id)
        self.messages[message.id] = message
        self._channel_messages.setdefault(channel.id, []).append(message.id)
        channel.last_message_id = message.id
        channel.message_count += 1
        intent = INTENT_DIRECT_MESSAGES if channel.type == CHANNEL_DM else INTENT_GUILD_MESSAGES
        self.dispatch("MESSAGE_CREATE", self.message_json(message, gateway=True), intent=intent)
        self._changed()
        return message

    def post_message(
        self,
        channel_id: str,
        author_id: str,
        content: str,
        *,
        message_reference: str | dict[str, Any] | None = None,
        thread: bool | str | None = None,
    ) -> dict[str, Any]:
        """A human posts in a guild channel: MESSAGE_CREATE reaches the bot.

        `message_reference` (a message id or Discord's reference object) makes it a reply
        (type 19). `thread` (True or a thread name) first opens a new public thread under
        the channel (THREAD_CREATE) and posts inside it; posting to an existing thread's id
        as `channel_id` also works.
        """
        with self.lock:
            channel = self._channel(channel_id)
            author = self._user(author_id)
            if channel.type == CHANNEL_DM:
                raise DiscordError(400, "post_message is for guild channels", 0)
            if author.id not in self.members:
                raise DiscordError(403, "Missing Access: the author is not a guild member", 50001)
            if thread:
                name = thread if isinstance(thread, str) else content[:40] or "thread"
                channel = self.create_thread(channel.id, author.id, name)
            reference: dict[str, Any] | None = None
            if message_reference:
                if isinstance(message_reference, str):
                    reference = {"message_id": message_reference}
                else:
                    reference = dict(message_reference)
                target = self.messages.get(str(reference.get("message_id")))
                if target is None:
                    raise unknown_message()
                reference.setdefault("channel_id", target.channel_id)
            message = self._store_message(
                channel, author_id=author.id, content=content, reference=reference
            )
            return self.message_json(message, gateway=True)

    def create_thread(self, parent_id: str, owner_id: str, name: str) -> Channel:
        """Open a public thread under a text channel; THREAD_CREATE (newly_created)."""
        with self.lock:
            parent = self._channel(parent_id)
            if parent.type != CHANNEL_GUILD_TEXT:
                raise DiscordError(400, "threads live under text channels", 0)
            thread = Channel(
                id=self.snowflakes.next(),
                type=CHANNEL_PUBLIC_THREAD,
                name=name,
                guild_id=self.guild_id,
                parent_id=parent.id,
                owner_id=str(owner_id),
            )
            self.channels[thread.id] = thread
            self._channel_messages[thread.id] = []
            self.dispatch(
                "THREAD_CREATE", {**thread.to_json(), "newly_created": True}, intent=INTENT_GUILDS
            )
            self._changed()
            return thread

    def edit_message(self, message_id: str, content: str) -> dict[str, Any]:
        """The author edits their message: MESSAGE_UPDATE with the full new message."""
        with self.lock:
            message = self.messages.get(str(message_id))
            if message is None:
                raise unknown_message()
            message.content = content
            message.edited_timestamp = now_iso()
            channel = self.channels[message.channel_id]
            intent = INTENT_DIRECT_MESSAGES if channel.type == CHANNEL_DM else INTENT_GUILD_MESSAGES
            data = self.message_json(message, gateway=True)
            self.dispatch("MESSAGE_UPDATE", data, intent=intent)
            self._changed()
            return data

    def channel_messages(self, channel_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                self.message_json(self.messages[m])
                for m in self._channel_messages.get(str(channel_id), [])
            ]

    def dms_for(self, user_id: str) -> list[dict[str, Any]]:
        """Messages in the DM channel with this user (what the bot sent them), oldest first."""
        with self.lock:
            channel_id = self.dm_channels.get(str(user_id))
            return [] if channel_id is None else self.channel_messages(channel_id)

    def get_message(self, message_id: str) -> dict[str, Any] | None:
        with self.lock:
            message = self.messages.get(str(message_id))
            return None if message is None else self.message_json(message)

    def reactions(self, message_id: str) -> dict[str, list[str]]:
        with self.lock:
            message = self.messages.get(str(message_id))
            return {} if message is None else {k: list(v) for k, v in message.reactions.items()}

    # ----------------------------------------------------------------------------------
    # OAuth2
    # ----------------------------------------------------------------------------------

    def set_oauth_user(self, user_id: str | None, *, deny: bool = False) -> None:
        """Who consents on /oauth2/authorize. None shows a page to pick a user; `deny`
        makes consent fail with `error=access_denied`."""
        with self.lock:
            if user_id is not None:
                self._user(user_id)
            self.oauth_current_user = None if user_id is None else str(user_id)
            self.oauth_deny = bool(deny)
            self._changed()

    def issue_code(
        self, *, user_id: str, client_id: str, redirect_uri: str, scopes: frozenset[str]
    ) -> str:
        with self.lock:
            self._user(user_id)
            code = secrets.token_urlsafe(20)
            self.oauth_codes[code] = OAuthCode(
                user_id=str(user_id),
                client_id=client_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                expires_at=time.monotonic() + self.config.oauth_code_ttl_s,
            )
            self._changed()
            return code

    def exchange_code(self, *, code: str, redirect_uri: str, client_id: str) -> dict[str, Any]:
        """Single use: the code is gone after the first attempt, right or wrong."""
        with self.lock:
            grant = self.oauth_codes.pop(code, None)
            if grant is None or grant.expires_at < time.monotonic():
                raise OAuthError("invalid_grant", 'Invalid "code" in request.')
            if grant.redirect_uri != redirect_uri:
                raise OAuthError("invalid_grant", 'Invalid "redirect_uri" in request.')
            if grant.client_id != client_id:
                raise OAuthError("invalid_grant", 'Invalid "code" in request.')
            return self._issue_token(grant.user_id, grant.scopes)

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        with self.lock:
            access = self.oauth_refresh.pop(refresh_token, None)
            token = self.oauth_tokens.pop(access or "", None)
            if token is None:
                raise OAuthError("invalid_grant", "Invalid refresh token")
            return self._issue_token(token.user_id, token.scopes)

    def revoke(self, token: str) -> None:
        with self.lock:
            access = self.oauth_refresh.pop(token, token)
            grant = self.oauth_tokens.pop(access, None)
            if grant is not None:
                self.oauth_refresh.pop(grant.refresh_token, None)
            self._changed()

    def _issue_token(self, user_id: str, scopes: frozenset[str]) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        ttl = self.config.oauth_token_ttl_s
        self.oauth_tokens[access] = OAuthToken(
            user_id=user_id,
            scopes=scopes,
            expires_at=time.monotonic() + ttl,
            refresh_token=refresh,
        )
        self.oauth_refresh[refresh] = access
        self._changed()
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "scope": " ".join(sorted(scopes)),
        }

    def _valid_token(self, access: str) -> OAuthToken | None:
        token = self.oauth_tokens.get(access)
        if token is None or token.expires_at < time.monotonic():
            return None
        return token

    def expire_token(self, access_token: str) -> None:
        """Make an access token expired (tests of token refresh)."""
        with self.lock:
            token = self.oauth_tokens.get(access_token)
            if token is not None:
                token.expires_at = 0.0
            self._changed()

    def authenticate(self, header: str | None) -> Auth | None:
        """`Bot <token>` or `Bearer <oauth token>` -> who is calling, or None."""
        if not header:
            return None
        kind, _, credential = header.partition(" ")
        with self.lock:
            if kind == "Bot" and credential == self.config.bot_token:
                return Auth(kind="bot", user_id=self.bot.id)
            if kind == "Bearer":
                token = self._valid_token(credential)
                if token is not None:
                    return Auth(kind="bearer", user_id=token.user_id, scopes=token.scopes)
        return None

    # ----------------------------------------------------------------------------------
    # Faults, rate limits, request log
    # ----------------------------------------------------------------------------------

    def add_fault(
        self,
        path_prefix: str = "/",
        status: int = 429,
        *,
        method: str | None = None,
        count: int | None = 1,
        seconds: float | None = None,
        retry_after: float = 0.5,
        is_global: bool = False,
        code: int | None = None,
        message: str | None = None,
    ) -> int:
        """Answer the next `count` requests matching method + path prefix (relative to the
        API base, "/api/v10" optional) with `status` — or all of them for `seconds`, when
        `count` is None. Returns the fault id."""
        with self.lock:
            fault = Fault(
                path_prefix=normalise_api_path(path_prefix),
                status=int(status),
                method=method.upper() if method else None,
                remaining=None if count is None else int(count),
                until=None if seconds is None else time.monotonic() + float(seconds),
                retry_after=float(retry_after),
                is_global=bool(is_global),
                scope="global" if is_global else "user",
                code=code,
                message=message,
            )
            self.faults.append(fault)
            self._changed()
            return fault.id

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
            self._changed()

    def take_fault(self, method: str, api_path: str) -> Fault | None:
        with self.lock:
            now = time.monotonic()
            self.faults = [f for f in self.faults if f.active(now)]
            for fault in self.faults:
                if fault.matches(method, api_path, now):
                    fault.hits += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
            return None

    def set_rate_limit(self, route_key: str, limit: int, per: float) -> None:
        with self.lock:
            self.ratelimiter.set_limit(route_key, int(limit), float(per))
            self.config.rate_limits[route_key] = (int(limit), float(per))

    def set_global_rate_limit(self, limit: int, per: float) -> None:
        with self.lock:
            self.ratelimiter.set_global_limit(int(limit), float(per))
            self.config.global_rate_limit = (int(limit), float(per))

    def record_request(self, entry: dict[str, Any], *, forced: bool, scope: str | None) -> None:
        with self.lock:
            self._request_seq += 1
            entry["seq"] = self._request_seq
            self.request_log.append(entry)
            status = entry["status"]
            self.stats["requests"] += 1
            self.stats["by_status"][status] += 1
            if status == 429:
                self.stats["rate_limited"]["forced" if forced else "organic"] += 1
                if scope == "global":
                    self.stats["rate_limited"]["global"] += 1
            if status in (401, 403) or (status == 429 and scope != "shared"):
                self.stats["invalid_requests"] += 1
            self._changed()

    def requests(
        self,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        route: str | None = None,
        status: int | None = None,
    ) -> list[dict[str, Any]]:
        """Logged REST/OAuth requests, oldest first, filtered. `path_prefix` is matched
        against the path relative to the API base ("/guilds/..."), "/api/v10" optional."""
        prefix = normalise_api_path(path_prefix) if path_prefix else None
        with self.lock:
            return [
                dict(e)
                for e in self.request_log
                if (method is None or e["method"] == method.upper())
                and (prefix is None or (e["api_path"] or e["path"]).startswith(prefix))
                and (route is None or e["route"] == route)
                and (status is None or e["status"] == status)
            ]

    def clear_requests(self) -> None:
        with self.lock:
            self.request_log.clear()
            self.stats = self._fresh_stats()
            self._changed()

    def set_config(self, **changes: Any) -> None:
        """Change behaviour switches at run time (any `Seed` field that is not world
        data), e.g. heartbeat_interval_ms, dm_requires_mutual_guild, redirect_uris."""
        world = {"roles", "channels", "users", "guild_id", "application_id", "bot_role_id"}
        with self.lock:
            for name, value in changes.items():
                if name in world or not hasattr(self.config, name):
                    raise DiscordError(400, f"unknown or read-only config field: {name}", 0)
                if name == "rate_limits":
                    for key, (limit, per) in value.items():
                        self.set_rate_limit(key, limit, per)
                    continue
                if name == "global_rate_limit":
                    self.set_global_rate_limit(*value)
                    continue
                setattr(self.config, name, value)
            self._changed()

    # ----------------------------------------------------------------------------------
    # Gateway
    # ----------------------------------------------------------------------------------

    def application_flags(self) -> int:
        if not self.config.privileged_intents_enabled:
            return 0
        return APP_FLAG_GATEWAY_GUILD_MEMBERS_LIMITED | APP_FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED

    def dispatch(self, event: str, data: dict[str, Any], *, intent: int | None = None) -> None:
        """Send a DISPATCH to every live session subscribed to `intent` (default: the
        intent Discord ties the event to). Disconnected-but-resumable sessions buffer it
        for replay on RESUME."""
        intent = _EVENT_INTENTS.get(event, 0) if intent is None else intent
        with self.lock:
            for session in self.sessions.values():
                if session.resumable and (not intent or session.intents & intent):
                    session.deliver(event, data)
            self._changed()

    def gateway_identify(
        self,
        data: dict[str, Any],
        *,
        sink: Callable[[dict[str, Any]], None],
        connection_id: int,
        resume_url: str,
    ) -> GatewaySession:
        """Validate IDENTIFY, open a session and deliver READY + GUILD_CREATE."""
        token = str(data.get("token") or "").removeprefix("Bot ")
        intents = int(data.get("intents") or 0)
        with self.lock:
            if token != self.config.bot_token:
                raise GatewayClose(4004, "Authentication failed.")
            required = self.config.required_intents
            privileged_denied = not self.config.privileged_intents_enabled and bool(
                intents & PRIVILEGED_INTENTS
            )
            if intents & required != required or privileged_denied:
                raise GatewayClose(4014, "Disallowed intent(s).")
            self.identify_count += 1
            session = GatewaySession(
                session_id=uuid.uuid4().hex,
                intents=intents,
                shard=data.get("shard"),
                connected=True,
                sink=sink,
                connection_id=connection_id,
                buffer=deque(maxlen=self.config.resume_buffer_size),
            )
            self.sessions[session.session_id] = session
            self._prune_sessions()
            ready: dict[str, Any] = {
                "v": 10,
                "user": {**self.bot.to_json(), "verified": True, "mfa_enabled": False},
                "guilds": [{"id": self.guild_id, "unavailable": True}],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": resume_url,
                "application": {"id": self.application_id, "flags": self.application_flags()},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": [],
                "user_settings": {},
                "auth": {},
            }
            if session.shard is not None:
                ready["shard"] = session.shard
            session.deliver("READY", ready)
            if intents & INTENT_GUILDS:
                threshold = min(max(int(data.get("large_threshold") or 50), 50), 250)
                session.deliver("GUILD_CREATE", self.guild_create_json(large_threshold=threshold))
            self._changed()
            return session

    def _prune_sessions(self) -> None:
        stale = [s for s in self.sessions.values() if not s.connected]
        for session in stale[: max(0, len(self.sessions) - MAX_KEPT_SESSIONS)]:
            del self.sessions[session.session_id]

    def gateway_resume(
        self,
        data: dict[str, Any],
        *,
        sink: Callable[[dict[str, Any]], None],
        connection_id: int,
    ) -> GatewaySession | None:
        """RESUME: re-attach the session to this socket and replay what it missed, then
        RESUMED. None means "invalid session" (the client must identify again)."""
        token = str(data.get("token") or "").removeprefix("Bot ")
        with self.lock:
            session = self.sessions.get(str(data.get("session_id")))
            if token != self.config.bot_token or session is None or not session.resumable:
                return None
            missed = session.missed_since(int(data.get("seq") or 0))
            if missed is None:
                session.resumable = False
                return None
            if session.sink is not None and session.connected:
                # Discord drops the older socket when a session is resumed elsewhere.
                session.sink({"__close__": 4000})
            session.sink = sink
            session.connection_id = connection_id
            session.connected = True
            session.resume_count += 1
            self.resume_count += 1
            for payload in missed:
                sink(payload)
            session.deliver("RESUMED", {})
            self._changed()
            return session

    def gateway_detach(self, session: GatewaySession, connection_id: int) -> None:
        with self.lock:
            if session.connection_id == connection_id:
                session.sink = None
                session.connected = False
                session.connection_id = None
                self._changed()

    def gateway_heartbeat(self, session: GatewaySession | None) -> None:
        with self.lock:
            if session is not None:
                session.heartbeats += 1
                session.last_heartbeat_at = time.time()
                self._changed()

    def gateway_member_chunks(
        self, session: GatewaySession, data: dict[str, Any]
    ) -> list[dict[str, Any]] | None:
        """REQUEST_GUILD_MEMBERS -> the GUILD_MEMBERS_CHUNK payloads (1000 members each).
        None when the all-members request is rate limited (RATE_LIMITED is sent instead)."""
        with self.lock:
            guild_id = str(data.get("guild_id"))
            if guild_id != self.guild_id:
                return []
            nonce = data.get("nonce")
            user_ids = data.get("user_ids")
            query = data.get("query")
            limit = int(data.get("limit") or 0)
            members: list[Member] = []
            not_found: list[str] = []
            if user_ids:
                for user_id in user_ids if isinstance(user_ids, list) else [user_ids]:
                    member = self.members.get(str(user_id))
                    if member is None:
                        not_found.append(str(user_id))
                    else:
                        members.append(member)
            elif query:
                needle = str(query).lower()
                for user_id in self._member_ids:
                    member = self.members[str(user_id)]
                    if member.user.username.lower().startswith(needle):
                        members.append(member)
                        if len(members) >= (limit or 100):
                            break
            else:
                interval = self.config.member_request_interval_s
                now = time.monotonic()
                last = self._last_all_members_request
                if interval and last is not None and now - last < interval:
                    session.deliver(
                        "RATE_LIMITED",
                        {
                            "opcode": 8,
                            "retry_after": round(interval - (now - last), 3),
                            "meta": {"guild_id": guild_id, "nonce": nonce},
                        },
                        replayable=False,
                    )
                    return None
                self._last_all_members_request = now
                members = [self.members[str(i)] for i in self._member_ids]
            chunks = [members[i : i + 1000] for i in range(0, len(members), 1000)] or [[]]
            payloads: list[dict[str, Any]] = []
            for index, chunk in enumerate(chunks):
                payload: dict[str, Any] = {
                    "guild_id": guild_id,
                    "members": [m.to_json() for m in chunk],
                    "chunk_index": index,
                    "chunk_count": len(chunks),
                }
                if nonce is not None:
                    payload["nonce"] = nonce
                if not_found and index == 0:
                    payload["not_found"] = not_found
                payloads.append(payload)
            return payloads

    def gateway_sessions(self) -> list[dict[str, Any]]:
        with self.lock:
            return [s.to_json() for s in self.sessions.values()]

    def connected_sessions(self) -> list[dict[str, Any]]:
        with self.lock:
            return [s.to_json() for s in self.sessions.values() if s.connected]

    def _live_targets(self, session_id: str | None) -> list[GatewaySession]:
        return [
            s
            for s in self.sessions.values()
            if s.connected and s.sink is not None and session_id in (None, s.session_id)
        ]

    def gateway_close(self, *, code: int = 4000, session_id: str | None = None) -> int:
        """Close connected sockets from the server side (4000 = unknown error: discord.py
        reconnects and RESUMEs). Returns how many sockets were closed."""
        with self.lock:
            targets = self._live_targets(session_id)
            for session in targets:
                assert session.sink is not None
                session.sink({"__close__": int(code)})
            return len(targets)

    def gateway_reconnect(self, *, session_id: str | None = None) -> int:
        """Send op 7 RECONNECT: the client should reconnect and RESUME."""
        with self.lock:
            targets = self._live_targets(session_id)
            for session in targets:
                assert session.sink is not None
                session.sink({"op": 7, "d": None})
            return len(targets)

    def gateway_invalidate(self, *, resumable: bool = False, session_id: str | None = None) -> int:
        """Send op 9 INVALID_SESSION; with resumable=False the session is gone for good."""
        with self.lock:
            targets = self._live_targets(session_id)
            for session in targets:
                assert session.sink is not None
                session.sink({"op": 9, "d": bool(resumable)})
                if not resumable:
                    session.resumable = False
            return len(targets)

    # ----------------------------------------------------------------------------------
    # Snapshot for GET /_control/state
    # ----------------------------------------------------------------------------------

    def snapshot(self, *, member_limit: int = 500) -> dict[str, Any]:
        with self.lock:
            now = time.monotonic()
            members_shown = self._member_ids[:member_limit]
            return {
                "application": {
                    "id": self.application_id,
                    "client_id": self.application_id,
                    "name": self.config.application_name,
                    "flags": self.application_flags(),
                },
                "bot": self.bot.to_json(),
                "guild": {
                    "id": self.guild_id,
                    "name": self.guild_name,
                    "owner_id": self.owner_id,
                    "member_count": len(self.members),
                    "roles": self.role_list_json(),
                    "channels": self.guild_channels_json(),
                    "threads": self.threads_json(),
                },
                "bot_top_position": self.bot_top_position(),
                "bot_permissions": str(self.bot_permissions()),
                "members": [self.members[str(i)].to_json() for i in members_shown],
                "members_truncated": len(self._member_ids) > member_limit,
                "users": [
                    {
                        **u.to_json(),
                        "email": u.email,
                        "dms_closed": u.dms_closed,
                        "banned": u.banned,
                        "in_guild": u.id in self.members,
                    }
                    for u in list(self.users.values())[:member_limit]
                ],
                "oauth": {
                    "current_user": self.oauth_current_user,
                    "deny": self.oauth_deny,
                    "codes_outstanding": len(self.oauth_codes),
                    "tokens": len(self.oauth_tokens),
                },
                "messages": len(self.messages),
                "dm_counts": {
                    user_id: len(self._channel_messages.get(channel_id, []))
                    for user_id, channel_id in self.dm_channels.items()
                },
                "gateway": {
                    "identify_count": self.identify_count,
                    "resume_count": self.resume_count,
                    "connected": sum(1 for s in self.sessions.values() if s.connected),
                    "connections_open": self.connections_open,
                },
                "gateway_sessions": self.gateway_sessions(),
                "faults": [f.to_json(now) for f in self.faults],
                "rate_limits": {k: list(v) for k, v in self.config.rate_limits.items()},
                "global_rate_limit": list(self.config.global_rate_limit),
                "stats": {
                    **self.stats,
                    "by_status": {str(k): v for k, v in self.stats["by_status"].items()},
                    "rate_limited": dict(self.stats["rate_limited"]),
                },
                "config": {
                    "heartbeat_interval_ms": self.config.heartbeat_interval_ms,
                    "required_intents": self.config.required_intents,
                    "privileged_intents_enabled": self.config.privileged_intents_enabled,
                    "dm_requires_mutual_guild": self.config.dm_requires_mutual_guild,
                    "member_request_interval_s": self.config.member_request_interval_s,
                    "redirect_uris": list(self.config.redirect_uris),
                },
            }


class OAuthError(Exception):
    """An OAuth2 error answer: `{"error": ..., "error_description": ...}` with 400."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


_EVENT_INTENTS: dict[str, int] = {
    "GUILD_MEMBER_ADD": INTENT_GUILD_MEMBERS,
    "GUILD_MEMBER_UPDATE": INTENT_GUILD_MEMBERS,
    "GUILD_MEMBER_REMOVE": INTENT_GUILD_MEMBERS,
    "GUILD_ROLE_UPDATE": INTENT_GUILDS,
    "THREAD_CREATE": INTENT_GUILDS,
    "MESSAGE_CREATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_UPDATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_REACTION_ADD": INTENT_GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE": INTENT_GUILD_MESSAGE_REACTIONS,
}


def _emoji_json(key: str) -> dict[str, Any]:
    """ "🎉" -> {"id": None, "name": "🎉"}; "party:123" -> {"id": "123", "name": "party"}."""
    if ":" in key:
        name, _, emoji_id = key.rpartition(":")
        return {"id": emoji_id, "name": name}
    return {"id": None, "name": key}
