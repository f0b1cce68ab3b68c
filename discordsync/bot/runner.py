"""The bot's life cycle: wait for the lease, connect, keep the lease and heartbeat, shut down.

Exactly one bot holds the gateway connection: the ``bot`` lease is renewed every 15 s with a
45 s expiry, so a second ``runbot`` waiting for it takes over within a minute of the first one
dying, even by SIGKILL. Losing the lease (the database said someone else holds it) disconnects
at once: two bots would double every promotion and DM.

discord.py does not handle SIGTERM; we turn SIGTERM/SIGINT into a flag, stop taking new
events, give the handlers in flight a bounded time to finish, release the lease, close the
gateway connection and the database connections, and exit 0 (1 if the handlers did not finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from discordsync.bot.client import GatewayBot, point_at_configured_discord
from discordsync.bot.selfcheck import build_report, facts_from_guild, selfcheck_store
from discordsync.bot.services import heartbeat_beat
from ops.leases import lease_acquire, lease_release

log = structlog.get_logger(__name__)

LEASE_NAME = "bot"


class BotRunner:
    def __init__(
        self,
        *,
        lease_ttl: float = 45.0,
        lease_renew_every: float = 15.0,
        lease_poll_every: float = 5.0,
        heartbeat_every: float = 30.0,
        selfcheck_every: float = 30 * 60.0,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.lease_ttl = timedelta(seconds=lease_ttl)
        self.lease_renew_every = lease_renew_every
        self.lease_poll_every = lease_poll_every
        self.heartbeat_every = heartbeat_every
        self.selfcheck_every = selfcheck_every
        self.shutdown_timeout = shutdown_timeout
        self.accepting = True
        self.inflight: set[asyncio.Task[Any]] = set()
        self.stop_requested = asyncio.Event()
        self.connected = asyncio.Event()
        self.client: GatewayBot | None = None
        # Lease and heartbeat writes get their own thread, so a slow event handler in the
        # ORM thread can never delay a renewal past the lease expiry.
        self._housekeeping = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bot-lease")

    def _background(self, func: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            close_old_connections()
            try:
                return func(*args, **kwargs)
            finally:
                close_old_connections()

        return sync_to_async(run, thread_sensitive=False, executor=self._housekeeping)

    def request_stop(self, signame: str) -> None:
        if not self.stop_requested.is_set():
            log.info("bot_shutdown_requested", signal=signame, inflight=len(self.inflight))
        self.accepting = False
        self.stop_requested.set()

    async def sleep_or_stop(self, seconds: float) -> bool:
        """Sleep; True if a stop was requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_requested.wait(), timeout=seconds)
        return self.stop_requested.is_set()

    async def _take_lease(self) -> bool:
        return await self._background(lease_acquire)(
            name=LEASE_NAME, holder=self.holder, ttl=self.lease_ttl, now=timezone.now()
        )

    async def _wait_for_lease(self) -> bool:
        waiting_logged = False
        while not self.stop_requested.is_set():
            try:
                if await self._take_lease():
                    log.info("bot_lease_acquired", holder=self.holder)
                    return True
            except Exception:
                log.exception("bot_lease_check_failed")
            if not waiting_logged:
                log.info("bot_waiting_for_lease", holder=self.holder)
                waiting_logged = True
            if await self.sleep_or_stop(self.lease_poll_every):
                break
        return False

    async def _keep_lease(self) -> None:
        """Return when the lease is lost; renewal errors are retried until it would expire."""
        last_renewed = asyncio.get_running_loop().time()
        while not await self.sleep_or_stop(self.lease_renew_every):
            try:
                if not await self._take_lease():
                    log.error("bot_lease_lost", holder=self.holder)
                    return
                last_renewed = asyncio.get_running_loop().time()
            except Exception:
                log.exception("bot_lease_renew_failed")
                elapsed = asyncio.get_running_loop().time() - last_renewed
                if elapsed >= self.lease_ttl.total_seconds() - self.lease_renew_every:
                    # Another bot may take the lease before we can renew it again.
                    log.error("bot_lease_lost", holder=self.holder, reason="renewal failing")
                    return

    async def _heartbeat(self) -> None:
        while True:
            if self.client is not None and self.client.is_ready():
                try:
                    await self._background(heartbeat_beat)(
                        now=timezone.now(),
                        details={
                            "connected": True,
                            "holder": self.holder,
                            "latency_ms": round(self.client.latency * 1000, 1),
                        },
                    )
                except Exception:
                    log.exception("bot_heartbeat_failed")
            if await self.sleep_or_stop(self.heartbeat_every):
                return

    async def _selfcheck(self) -> None:
        await self.connected.wait()
        while True:
            if self.client is not None and self.client.is_ready():
                try:
                    report = build_report(
                        facts_from_guild(self.client), source="bot", now=timezone.now()
                    )
                    await self._background(selfcheck_store)(report, now=timezone.now())
                except Exception:
                    log.exception("bot_selfcheck_error")
            if await self.sleep_or_stop(self.selfcheck_every):
                return

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        log.info(
            "bot_starting",
            holder=self.holder,
            api_base=settings.DISCORD_API_BASE,
            gateway=settings.DISCORD_GATEWAY_URL,
        )
        try:
            if not await self._wait_for_lease():
                log.info("bot_stopped", reason="stopped before taking the lease", exit_code=0)
                return 0
            return await self._serve()
        finally:
            self._housekeeping.shutdown(wait=False)

    async def _serve(self) -> int:
        point_at_configured_discord()
        self.client = GatewayBot(runner=self)
        client_task = asyncio.create_task(self.client.start(settings.DISCORD_BOT_TOKEN))
        lease_task = asyncio.create_task(self._keep_lease())
        stop_task = asyncio.create_task(self.stop_requested.wait())
        chores = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._selfcheck())]
        await asyncio.wait(
            {client_task, lease_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
        )
        exit_code = 0
        release = True
        if lease_task.done() and not self.stop_requested.is_set():
            exit_code, release = 1, False
            reason = "lease lost"
        elif client_task.done() and not self.stop_requested.is_set():
            exit_code = 1
            error = client_task.exception() if not client_task.cancelled() else None
            reason = f"gateway connection ended: {type(error).__name__ if error else 'closed'}"
        else:
            reason = "signal"
        self.accepting = False
        self.stop_requested.set()
        drained = await self._drain()
        if not drained:
            exit_code = 1
        for task in (lease_task, stop_task, *chores):
            task.cancel()
        if release and drained:
            try:
                await asyncio.wait_for(
                    self._background(lease_release)(
                        name=LEASE_NAME, holder=self.holder, now=timezone.now()
                    ),
                    timeout=5.0,
                )
            except Exception:
                log.exception("bot_lease_release_failed")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), timeout=5.0)
        if not client_task.done():
            client_task.cancel()
        with contextlib.suppress(BaseException):
            await client_task
        if drained:
            await sync_to_async(connections.close_all, thread_sensitive=True)()
        connections.close_all()
        log.info("bot_stopped", reason=reason, drained=drained, exit_code=exit_code)
        return exit_code

    async def _drain(self) -> bool:
        """Let the handlers in flight finish, for at most ``shutdown_timeout`` seconds."""
        pending = {t for t in self.inflight if not t.done()}
        if not pending:
            return True
        log.info("bot_draining", inflight=len(pending), timeout_s=self.shutdown_timeout)
        _, still_running = await asyncio.wait(pending, timeout=self.shutdown_timeout)
        if still_running:
            log.error(
                "bot_shutdown_timeout", inflight=len(still_running), timeout_s=self.shutdown_timeout
            )
            return False
        return True
