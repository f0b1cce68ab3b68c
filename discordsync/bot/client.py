"""The discord.py client: gateway events in, thin handlers that call services.

On every connect and resume the bot first catches up on #introductions (what was posted while
it was not connected, see ``discordsync.introductions``); until that pass has finished, live
messages are handled but do not move the catch-up mark, so nothing older can be skipped.

Every handler runs with a fresh request id in the structlog context, does its database work in
a worker thread (the ORM is synchronous) with stale connections closed around it, and is
tracked so a shutdown can let it finish. Roles are never written here: services request a role
sync, and DMs go through the outbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar
from uuid import uuid4

import discord
import discord.gateway
import discord.http
import structlog
import yarl
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from discordsync.bot.services import member_guild_join, member_guild_leave
from discordsync.introductions import (
    INTRO_REACTION,
    MessageFacts,
    Outcome,
    introduction_handle,
    introductions_catch_up,
    introductions_mark_handled,
)

log = structlog.get_logger(__name__)


class Runner(Protocol):
    """What the bot needs from the process that runs it (``discordsync.bot.runner.BotRunner``):
    whether new events are still accepted, the handlers in flight, the connected signal, and
    an interruptible sleep."""

    accepting: bool
    inflight: set[asyncio.Task[Any]]
    connected: asyncio.Event

    async def sleep_or_stop(self, seconds: float) -> bool: ...


T = TypeVar("T")

# A catch-up that failed (Discord unreachable) or stopped at its page bound runs again after
# this many seconds while the connection lasts.
CATCH_UP_RETRY_SECONDS = 60.0
THREAD_CHANNEL_TYPES = (
    discord.ChannelType.public_thread,
    discord.ChannelType.private_thread,
    discord.ChannelType.news_thread,
)


def point_at_configured_discord() -> None:
    """Send REST and the gateway to the configured Discord (a fake one in sandbox and tests).

    ``Route.BASE`` is discord.py's one switch for REST. The plain ``Client`` connects to the
    constant ``DiscordWebSocket.DEFAULT_GATEWAY`` and falls back to it after an invalidated
    session, so that constant is the hook for the gateway URL.
    """
    discord.http.Route.BASE = settings.DISCORD_API_BASE
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        settings.DISCORD_GATEWAY_URL.rstrip("/") + "/"
    )


def bot_intents() -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True
    intents.members = True  # privileged: join/leave events
    intents.guild_messages = True
    intents.message_content = True  # privileged: the text of introductions
    return intents


def orm(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Run ``func`` in the ORM thread, closing connections that are stale or past their age."""

    def run(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=True)


def message_facts(message: discord.Message, *, is_edit: bool) -> MessageFacts:
    channel_type = getattr(message.channel, "type", None)
    return MessageFacts(
        channel_id=str(message.channel.id),
        author_id=str(message.author.id),
        author_is_bot=bool(message.author.bot),
        content=message.content or "",
        message_type=message.type.value,
        has_reference=message.reference is not None,
        in_thread=channel_type in THREAD_CHANNEL_TYPES,
        is_edit=is_edit,
    )


class GatewayBot(discord.Client):
    def __init__(self, *, runner: Runner) -> None:
        super().__init__(
            intents=bot_intents(),
            # We never need the full member list in memory; join/leave events carry the user.
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            max_messages=None,
            # A rate-limit wait longer than this raises instead of stalling shutdown.
            max_ratelimit_timeout=30.0,
        )
        self.runner = runner
        self.guild_id = int(settings.DISCORD_GUILD_ID) if settings.DISCORD_GUILD_ID else 0
        # True once this connection has caught up on #introductions; reset on disconnect.
        self.caught_up = False
        self._catch_up_generation = 0

    async def _handle(self, event: str, work: Callable[[], Awaitable[str]], **context: str) -> None:
        """Track one event: fresh request id, timing, failures logged instead of raised."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=uuid4().hex, bot_event=event, **context)
        if not self.runner.accepting:
            log.info("bot_event_dropped", reason="shutting down")
            return
        task = asyncio.current_task()
        if task is not None:
            self.runner.inflight.add(task)
        started = time.monotonic()
        try:
            outcome = await work()
            log.info(
                "bot_event_handled",
                outcome=outcome,
                ms=round((time.monotonic() - started) * 1000, 1),
            )
        except Exception:
            log.exception("bot_event_failed")
        finally:
            if task is not None:
                self.runner.inflight.discard(task)

    # --- connection ---------------------------------------------------------------------
    async def on_ready(self) -> None:
        structlog.contextvars.clear_contextvars()
        log.info(
            "bot_connected",
            user_id=str(self.user.id) if self.user else "",
            guilds=len(self.guilds),
            guild_visible=self.get_guild(self.guild_id) is not None,
        )
        self.runner.connected.set()
        await self._catch_up(trigger="ready")

    async def on_resumed(self) -> None:
        log.info("bot_resumed")
        # Discord replays what a resumed session missed, but only while it still holds it.
        await self._catch_up(trigger="resumed")

    async def on_disconnect(self) -> None:
        log.info("bot_disconnected")
        self.caught_up = False
        self._catch_up_generation += 1  # a pass still running belongs to the old connection

    async def _catch_up(self, *, trigger: str) -> None:
        """Handle the introductions missed while offline; retried until one pass completes.

        A disconnect, or a newer connect or resume, supersedes an older pass and its retries.
        """
        self._catch_up_generation += 1
        generation = self._catch_up_generation

        async def work() -> str:
            result = await orm(introductions_catch_up)(now=timezone.now())
            if generation == self._catch_up_generation:
                self.caught_up = result.complete
            return "caught_up" if result.complete else "incomplete"

        while generation == self._catch_up_generation and self.runner.accepting:
            await self._handle("introductions_catch_up", work, trigger=trigger)
            if self.caught_up or await self.runner.sleep_or_stop(CATCH_UP_RETRY_SECONDS):
                return

    # --- introductions ------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        await self._handle(
            "message_create",
            lambda: self._introduction(message, is_edit=False),
            message_id=str(message.id),
            discord_user_id=str(message.author.id),
        )

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        await self._handle(
            "message_update",
            lambda: self._introduction(payload.message, is_edit=True),
            message_id=str(payload.message_id),
            discord_user_id=str(payload.message.author.id),
        )

    async def _introduction(self, message: discord.Message, *, is_edit: bool) -> str:
        if message.guild is None or message.guild.id != self.guild_id:
            return "ignored"
        facts = message_facts(message, is_edit=is_edit)
        outcome = await orm(introduction_handle)(
            facts=facts, message_id=str(message.id), now=timezone.now()
        )
        if outcome is Outcome.PROMOTED:
            # After commit: a rolled-back promotion never shows a reaction.
            await self._react(message)
        if not is_edit and self.caught_up:
            await orm(introductions_mark_handled)(
                channel_id=facts.channel_id, message_id=str(message.id)
            )
        return outcome.value

    async def _react(self, message: discord.Message) -> None:
        try:
            await asyncio.wait_for(
                message.add_reaction(INTRO_REACTION), timeout=settings.DISCORD_TIMEOUT_SECONDS
            )
        except (discord.HTTPException, TimeoutError) as exc:
            # Cosmetic: the promotion stands; say so and move on.
            log.warning("intro_reaction_failed", error=type(exc).__name__)

    # --- guild membership ---------------------------------------------------------------
    async def on_member_join(self, member: discord.Member) -> None:
        async def work() -> str:
            if member.guild.id != self.guild_id:
                return "ignored"
            known = await orm(member_guild_join)(discord_id=str(member.id), now=timezone.now())
            return "joined" if known else "unknown_user"

        await self._handle("member_join", work, discord_user_id=str(member.id))

    async def on_raw_member_remove(self, payload: discord.RawMemberRemoveEvent) -> None:
        async def work() -> str:
            if payload.guild_id != self.guild_id:
                return "ignored"
            known = await orm(member_guild_leave)(
                discord_id=str(payload.user.id), now=timezone.now()
            )
            return "left" if known else "unknown_user"

        await self._handle("member_remove", work, discord_user_id=str(payload.user.id))
