"""Bot self-check: can the bot do its job in the configured guild?

It checks that the bot's highest role sits above the four managed roles (Discord only lets a
bot grant roles below its own), that its roles give it Manage Roles, Kick Members and Create
Instant Invite, that the configured roles and channels exist, and that the privileged intents
(server members, message content) are granted.

The facts come from two places: the running bot reads its gateway cache
(``facts_from_guild``), ``manage.py discord_selfcheck`` reads REST (``facts_from_rest``). One
pure function, ``evaluate``, turns facts into problems, so both report the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord
import structlog
from django.conf import settings

from discordsync.bot.services import heartbeat_beat
from ops.services import notification_enqueue

if TYPE_CHECKING:
    from discord.http import HTTPClient

log = structlog.get_logger(__name__)

# Permission bits (https://discord.com/developers/docs/topics/permissions).
PERMISSION_BITS = {
    "CREATE_INSTANT_INVITE": 1 << 0,
    "KICK_MEMBERS": 1 << 1,
    # The catch-up on connect lists #introductions (GET /channels/{id}/messages).
    "READ_MESSAGE_HISTORY": 1 << 16,
    "MANAGE_ROLES": 1 << 28,
}
ADMINISTRATOR = 1 << 3

# Application flags: the full flag for verified apps, the "limited" one for the rest.
APP_FLAG_GUILD_MEMBERS = (1 << 14) | (1 << 15)
APP_FLAG_MESSAGE_CONTENT = (1 << 18) | (1 << 19)

CHANNEL_SETTINGS = {
    "introductions": "DISCORD_INTRODUCTIONS_CHANNEL_ID",
    "billing_support": "DISCORD_BILLING_SUPPORT_CHANNEL_ID",
    "admin": "DISCORD_ADMIN_CHANNEL_ID",
}


class SelfCheckUnavailable(Exception):
    """The check itself could not run (network, credentials): no verdict either way."""


@dataclass(frozen=True)
class RoleInfo:
    id: str
    name: str
    position: int
    permissions: int


@dataclass
class GuildFacts:
    guild_found: bool
    guild_id: str = ""
    owner_id: str = ""
    bot_user_id: str = ""
    roles: dict[str, RoleInfo] = field(default_factory=dict)
    bot_role_ids: list[str] = field(default_factory=list)
    channel_ids: set[str] = field(default_factory=set)
    intent_members: bool = False
    intent_message_content: bool = False


@dataclass(frozen=True)
class Problem:
    code: str  # stable, used to deduplicate alerts
    message: str


@dataclass
class SelfCheckReport:
    source: str
    checked_at: str
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "checked_at": self.checked_at,
            "problems": [asdict(p) for p in self.problems],
        }


def evaluate(facts: GuildFacts) -> list[Problem]:
    """Every reason the bot cannot manage the configured roles and channels."""
    if not facts.guild_found:
        return [
            Problem(
                "guild_missing",
                f"guild {settings.DISCORD_GUILD_ID or '(DISCORD_GUILD_ID unset)'} is not "
                "visible to the bot (wrong id, or the bot was never invited)",
            )
        ]
    problems: list[Problem] = []
    bot_roles = [facts.roles[r] for r in facts.bot_role_ids if r in facts.roles]
    top = max((r.position for r in bot_roles), default=0)
    for name, role_id in settings.DISCORD_ROLE_IDS.items():
        setting = f"DISCORD_ROLE_{name.upper()}_ID"
        role = facts.roles.get(str(role_id)) if role_id else None
        if role is None:
            problems.append(
                Problem(f"role_missing:{name}", f"{setting}={role_id or '(unset)'} does not exist")
            )
        elif role.position >= top:
            problems.append(
                Problem(
                    f"hierarchy:{name}",
                    f"the bot's highest role (position {top}) is not above the {role.name} role "
                    f"(position {role.position}); move the bot's role up in Server Settings",
                )
            )
    # @everyone's permissions (its role id is the guild id) apply to every member.
    granted = 0
    everyone = facts.roles.get(facts.guild_id)
    if everyone is not None:
        granted |= everyone.permissions
    for role in bot_roles:
        granted |= role.permissions
    is_owner = bool(facts.owner_id) and facts.owner_id == facts.bot_user_id
    if not is_owner and not granted & ADMINISTRATOR:
        for perm, bit in PERMISSION_BITS.items():
            if not granted & bit:
                problems.append(Problem(f"permission:{perm}", f"the bot lacks {perm}"))
    for name, setting in CHANNEL_SETTINGS.items():
        channel_id = str(getattr(settings, setting, "") or "")
        if not channel_id or channel_id not in facts.channel_ids:
            problems.append(
                Problem(f"channel_missing:{name}", f"{setting}={channel_id or '(unset)'} not found")
            )
    if not facts.intent_members:
        problems.append(
            Problem("intent:members", "the Server Members privileged intent is not granted")
        )
    if not facts.intent_message_content:
        problems.append(
            Problem(
                "intent:message_content", "the Message Content privileged intent is not granted"
            )
        )
    return problems


def build_report(facts: GuildFacts, *, source: str, now: datetime) -> SelfCheckReport:
    return SelfCheckReport(source=source, checked_at=now.isoformat(), problems=evaluate(facts))


def facts_from_guild(client: discord.Client) -> GuildFacts:
    """Facts from the connected bot's cache. Connecting at all proves the intents it asked
    for were granted (Discord closes with 4014 otherwise)."""
    guild = client.get_guild(int(settings.DISCORD_GUILD_ID)) if settings.DISCORD_GUILD_ID else None
    if guild is None or guild.me is None:
        return GuildFacts(guild_found=False)
    return GuildFacts(
        guild_found=True,
        guild_id=str(guild.id),
        owner_id=str(guild.owner_id or ""),
        bot_user_id=str(guild.me.id),
        roles={
            str(r.id): RoleInfo(str(r.id), r.name, r.position, r.permissions.value)
            for r in guild.roles
        },
        bot_role_ids=[str(r.id) for r in guild.me.roles],
        channel_ids={str(c.id) for c in guild.channels},
        intent_members=bool(client.intents.members),
        intent_message_content=bool(client.intents.message_content),
    )


async def facts_from_rest(http: HTTPClient, *, token: str, timeout: float) -> GuildFacts:
    """Facts from REST only (no gateway connection): what ``discord_selfcheck`` uses."""

    async def call(coro: Any) -> Any:
        return await asyncio.wait_for(coro, timeout=timeout)

    try:
        me = await call(http.static_login(token))
        app = await call(http.application_info())
    except discord.LoginFailure as exc:
        raise SelfCheckUnavailable("the bot token was refused (401)") from exc
    except (discord.HTTPException, OSError, TimeoutError) as exc:
        raise SelfCheckUnavailable(f"Discord unreachable: {type(exc).__name__}") from exc
    flags = int(app.get("flags") or 0)
    facts = GuildFacts(
        guild_found=False,
        bot_user_id=str(me["id"]),
        intent_members=bool(flags & APP_FLAG_GUILD_MEMBERS),
        intent_message_content=bool(flags & APP_FLAG_MESSAGE_CONTENT),
    )
    if not settings.DISCORD_GUILD_ID:
        return facts
    try:
        guild = await call(http.get_guild(settings.DISCORD_GUILD_ID, with_counts=False))
        bot_member = await call(http.get_member(settings.DISCORD_GUILD_ID, me["id"]))
        channels = await call(http.get_all_guild_channels(settings.DISCORD_GUILD_ID))
    except (discord.NotFound, discord.Forbidden):
        return facts
    except (discord.HTTPException, OSError, TimeoutError) as exc:
        raise SelfCheckUnavailable(f"Discord unreachable: {type(exc).__name__}") from exc
    facts.guild_found = True
    facts.guild_id = str(guild["id"])
    facts.owner_id = str(guild.get("owner_id") or "")
    facts.roles = {
        str(r["id"]): RoleInfo(
            str(r["id"]), str(r.get("name", "")), int(r.get("position", 0)), int(r["permissions"])
        )
        for r in guild.get("roles", [])
    }
    facts.bot_role_ids = [str(r) for r in bot_member.get("roles", [])]
    facts.channel_ids = {str(c["id"]) for c in channels}
    return facts


def selfcheck_store(report: SelfCheckReport, *, now: datetime) -> None:
    """Keep the latest verdict on the bot heartbeat (readiness reads it) and alert the admin
    channel once per problem per day."""
    heartbeat_beat(now=now, details={"selfcheck": report.to_dict()})
    for problem in report.problems:
        notification_enqueue(
            kind="bot_alert",
            channel="admin_channel",
            recipient=settings.DISCORD_ADMIN_CHANNEL_ID,
            episode=f"selfcheck:{problem.code}:{now.date().isoformat()}",
            context={
                "summary": f"Bot self-check failed: {problem.code}",
                "details": problem.message,
            },
        )
    if report.ok:
        log.info("bot_selfcheck_ok", source=report.source)
    else:
        log.warning(
            "bot_selfcheck_failed", source=report.source, problems=[p.code for p in report.problems]
        )
