"""Run the fake Discord in a background thread (for tests and the sandbox command).

with FakeDiscordServer(heartbeat_interval_ms=200) as srv:
    srv.url, srv.api_base, srv.gateway_url, srv.authorize_url
    srv.state.add_fault("/guilds", 429, count=2)   # in-process control
    srv.settings()                                 # DISCORD_* settings for Django
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Any

from aiohttp import web

from .app import create_app
from .seed import Seed
from .state import FakeDiscordState


class FakeDiscordServer:
    """The fake on 127.0.0.1 and a free port (or `port`), served by its own event loop in a
    daemon thread. `state` is shared and thread-safe, so tests mutate it directly."""

    def __init__(
        self,
        seed: Seed | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **seed_overrides: Any,
    ) -> None:
        seed = seed or Seed()
        if seed_overrides:
            seed = seed.replace(**seed_overrides)
        self.seed = seed
        self.state = FakeDiscordState(seed)
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/oauth2/authorize"

    def settings(self) -> dict[str, str]:
        """The project's DISCORD_* settings pointing at this server."""
        return self.seed.settings(self.url)

    def start(self) -> FakeDiscordServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="fake-discord", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("fake Discord did not start within 10 s")
        if self._error is not None:
            raise RuntimeError("fake Discord failed to start") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            # No access log: test output stays readable; the request log is in `state`.
            self._runner = web.AppRunner(
                create_app(self.state), access_log=None, shutdown_timeout=2.0
            )
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.SockSite(self._runner, self._sock).start())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            self._sock.close()
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._thread = None
        self._sock.close()

    def __enter__(self) -> FakeDiscordServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
