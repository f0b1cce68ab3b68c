"""The world a fresh fake Discord starts with: fixed ids, tokens, roles, channels and users.

The ids match the sandbox defaults in `gateway/settings.py`, so a sandbox run needs no Discord
configuration at all. Tests can override any field (constructor keywords or a JSON seed file).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Gateway intents (https://discord.com/developers/docs/events/gateway#gateway-intents).
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_MESSAGE_CONTENT | (1 << 8)  # 8 = presences
REQUIRED_INTENTS = (
    INTENT_GUILDS | INTENT_GUILD_MEMBERS | INTENT_GUILD_MESSAGES | INTENT_MESSAGE_CONTENT
)

# Permission bits (https://discord.com/developers/docs/topics/permissions).
PERM_CREATE_INSTANT_INVITE = 1 << 0
PERM_KICK_MEMBERS = 1 << 1
PERM_ADMINISTRATOR = 1 << 3
PERM_ADD_REACTIONS = 1 << 6
PERM_VIEW_CHANNEL = 1 << 10
PERM_SEND_MESSAGES = 1 << 11
PERM_READ_MESSAGE_HISTORY = 1 << 16
PERM_MANAGE_ROLES = 1 << 28
EVERYONE_PERMISSIONS = (
    PERM_CREATE_INSTANT_INVITE
    | PERM_ADD_REACTIONS
    | PERM_VIEW_CHANNEL
    | PERM_SEND_MESSAGES
    | PERM_READ_MESSAGE_HISTORY
)
BOT_PERMISSIONS = EVERYONE_PERMISSIONS | PERM_KICK_MEMBERS | PERM_MANAGE_ROLES

# Application flags: the "limited" privileged-intent flags are what an unverified bot (fewer
# than 100 guilds) shows once the switches are on in the developer portal.
APP_FLAG_GATEWAY_GUILD_MEMBERS_LIMITED = 1 << 15
APP_FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19

# --- Fixed ids (snowflake-like strings; the same as the sandbox defaults in settings) -------
APPLICATION_ID = "100000000000000001"  # also the client id and the bot user's id
CLIENT_ID = APPLICATION_ID
CLIENT_SECRET = "sandbox-client-secret"
BOT_TOKEN = "sandbox-bot-token"
BOT_USER_ID = APPLICATION_ID
GUILD_ID = "200000000000000001"
EVERYONE_ROLE_ID = GUILD_ID  # Discord: the @everyone role's id is the guild's id
ROLE_SQUIRE_ID = "300000000000000001"
ROLE_KNIGHT_ID = "300000000000000002"
ROLE_LORD_ID = "300000000000000003"
ROLE_DEBTOR_ID = "300000000000000004"
ROLE_BOT_ID = "300000000000000005"
CHANNEL_INTRODUCTIONS_ID = "400000000000000001"
CHANNEL_BILLING_SUPPORT_ID = "400000000000000002"
CHANNEL_ADMIN_ALERTS_ID = "400000000000000003"
CHANNEL_GENERAL_ID = "400000000000000004"
OWNER_USER_ID = "500000000000000001"  # merlin: owns the guild, is a member
ARTHUR_ID = "500000000000000002"  # not in the guild; the default OAuth "current user"
GUINEVERE_ID = "500000000000000003"  # not in the guild
LANCELOT_ID = "500000000000000004"  # in the guild, no managed role
SEED_MEMBERS_START_ID = 600000000000000001  # first id `seed_members` hands out

# Per-route rate limits: route key -> (requests, per seconds). Discord documents neither
# the role-write nor the member-list limit, so these are our chosen defaults; everything is
# overridable. Route keys are listed in `fakes/discord/rest.py` (ROUTES).
DEFAULT_RATE_LIMITS: dict[str, tuple[int, float]] = {
    "guild_member_role": (10, 1.0),  # PUT/DELETE member role, per guild
    "guild_member": (10, 1.0),  # PUT/PATCH/DELETE member, per guild
    "guild_members_list": (50, 1.0),  # GET members pages, per guild
    "channel_messages": (5, 5.0),  # POST message, per channel (Discord's well-known 5/5s)
    "reactions": (1, 0.25),  # PUT/DELETE reaction, per channel (Discord's well-known 1/250ms)
    "dm_create": (10, 1.0),
    "oauth_token": (10, 1.0),
    "default": (50, 1.0),
}
DEFAULT_GLOBAL_RATE_LIMIT: tuple[int, float] = (50, 1.0)  # "50 requests per second" per bot


def _default_roles() -> list[dict[str, Any]]:
    return [
        {"id": ROLE_DEBTOR_ID, "name": "Debtor", "color": 0xE74C3C},
        {"id": ROLE_SQUIRE_ID, "name": "Squire", "color": 0x95A5A6},
        {"id": ROLE_KNIGHT_ID, "name": "Knight", "color": 0x3498DB},
        {"id": ROLE_LORD_ID, "name": "Lord", "color": 0xF1C40F},
    ]


def _default_channels() -> list[dict[str, Any]]:
    return [
        {"id": CHANNEL_INTRODUCTIONS_ID, "name": "introductions"},
        {"id": CHANNEL_BILLING_SUPPORT_ID, "name": "billing-support"},
        {"id": CHANNEL_ADMIN_ALERTS_ID, "name": "admin-alerts"},
        {"id": CHANNEL_GENERAL_ID, "name": "general"},
    ]


def _default_users() -> list[dict[str, Any]]:
    return [
        {"id": OWNER_USER_ID, "username": "merlin", "global_name": "Merlin", "in_guild": True},
        {"id": ARTHUR_ID, "username": "arthur", "global_name": "Arthur Pendragon"},
        {"id": GUINEVERE_ID, "username": "guinevere", "global_name": "Guinevere"},
        {"id": LANCELOT_ID, "username": "lancelot", "global_name": "Lancelot", "in_guild": True},
    ]


@dataclass
class Seed:
    """Everything configurable about the fake's world and behaviour.

    `roles` are the non-bot, non-@everyone roles from the bottom up; their positions are
    1..n in list order, and the bot's own role goes above them all (`bot_role_above=True`)
    or at the bottom (position 1) for hierarchy tests.
    """

    application_id: str = APPLICATION_ID
    application_name: str = "Membership Gateway (fake)"
    client_secret: str = CLIENT_SECRET
    bot_token: str = BOT_TOKEN
    bot_username: str = "Gatekeeper"
    guild_id: str = GUILD_ID
    guild_name: str = "The Revenue Council (fake)"
    owner_id: str = OWNER_USER_ID
    roles: list[dict[str, Any]] = field(default_factory=_default_roles)
    bot_role_id: str = ROLE_BOT_ID
    bot_role_above: bool = True
    bot_permissions: int = BOT_PERMISSIONS
    channels: list[dict[str, Any]] = field(default_factory=_default_channels)
    users: list[dict[str, Any]] = field(default_factory=_default_users)
    # OAuth: who "consents" on /oauth2/authorize. None means show a page to choose a user.
    oauth_current_user: str | None = ARTHUR_ID
    redirect_uris: list[str] = field(default_factory=list)  # empty = accept any redirect_uri
    oauth_code_ttl_s: float = 600.0
    oauth_token_ttl_s: int = 604800
    # Gateway
    heartbeat_interval_ms: int = 41250
    required_intents: int = REQUIRED_INTENTS
    privileged_intents_enabled: bool = True  # the developer-portal switches
    # Since 2025-08 Discord allows one "all members" REQUEST_GUILD_MEMBERS per guild per 30 s;
    # 0 disables the check (discord.py 2.7 does not understand the RATE_LIMITED answer).
    member_request_interval_s: float = 0.0
    resume_buffer_size: int = 5000
    # REST
    rate_limits: dict[str, tuple[int, float]] = field(
        default_factory=lambda: dict(DEFAULT_RATE_LIMITS)
    )
    global_rate_limit: tuple[int, float] = DEFAULT_GLOBAL_RATE_LIMIT
    # Discord refuses a DM (50007) when the bot and the user share no guild.
    dm_requires_mutual_guild: bool = True
    request_log_size: int = 100_000

    def __post_init__(self) -> None:
        # A partial `rate_limits` overrides only the routes it names; JSON has no tuples.
        self.rate_limits = {
            **DEFAULT_RATE_LIMITS,
            **{k: (int(v[0]), float(v[1])) for k, v in self.rate_limits.items()},
        }
        self.global_rate_limit = (int(self.global_rate_limit[0]), float(self.global_rate_limit[1]))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Seed:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown seed field(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> Seed:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes: Any) -> Seed:
        return dataclasses.replace(self, **changes)

    def role_id(self, name: str) -> str:
        """The id of a seeded role by (case-insensitive) name, e.g. `role_id("knight")`."""
        for role in self.roles:
            if role["name"].lower() == name.lower():
                return str(role["id"])
        raise KeyError(name)

    def channel_id(self, name: str) -> str:
        for channel in self.channels:
            if channel["name"] == name:
                return str(channel["id"])
        raise KeyError(name)

    def settings(self, base_url: str) -> dict[str, str]:
        """The project's DISCORD_* settings that point at a fake served at `base_url`."""
        base_url = base_url.rstrip("/")
        ws_url = "ws" + base_url.removeprefix("http") + "/gateway"
        values = {
            "DISCORD_API_BASE": f"{base_url}/api/v10",
            "DISCORD_OAUTH_AUTHORIZE_URL": f"{base_url}/oauth2/authorize",
            "DISCORD_GATEWAY_URL": ws_url,
            "DISCORD_CLIENT_ID": self.application_id,
            "DISCORD_CLIENT_SECRET": self.client_secret,
            "DISCORD_BOT_TOKEN": self.bot_token,
            "DISCORD_GUILD_ID": self.guild_id,
            "DISCORD_INVITE_URL": f"{base_url}/",
        }
        for name, setting in (
            ("squire", "DISCORD_ROLE_SQUIRE_ID"),
            ("knight", "DISCORD_ROLE_KNIGHT_ID"),
            ("lord", "DISCORD_ROLE_LORD_ID"),
            ("debtor", "DISCORD_ROLE_DEBTOR_ID"),
        ):
            try:
                values[setting] = self.role_id(name)
            except KeyError:
                continue
        for name, setting in (
            ("introductions", "DISCORD_INTRODUCTIONS_CHANNEL_ID"),
            ("billing-support", "DISCORD_BILLING_SUPPORT_CHANNEL_ID"),
            ("admin-alerts", "DISCORD_ADMIN_CHANNEL_ID"),
        ):
            try:
                values[setting] = self.channel_id(name)
            except KeyError:
                continue
        return values
