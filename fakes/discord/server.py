"""Run the fake Discord in a background thread (for tests and the sandbox command).

with FakeDiscordServer(heartbeat_interval_ms=200) as srv:
    srv.url, srv.api_base, srv.gateway_url, srv.authorize_url
    srv.state.add_fault("/guilds", 429, count=2)   # in-process control
    srv.settings()                                 # DISCORD_* settings for Django
"""

from __future__ import annotations

from typing import Any

from ..latency import Latency
from ..threaded import BackgroundServer
from .app import create_app
from .seed import Seed
from .state import FakeDiscordState


class FakeDiscordServer(BackgroundServer):
    """The fake on 127.0.0.1 and a free port (or `port`), served by its own event loop in a
    daemon thread. `state` is shared and thread-safe, so tests mutate it directly."""

    def __init__(
        self,
        seed: Seed | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        latency_jitter_ms: float = 0.0,
        **seed_overrides: Any,
    ) -> None:
        seed = seed or Seed()
        if seed_overrides:
            seed = seed.replace(**seed_overrides)
        self.seed = seed
        self.state = FakeDiscordState(seed)
        self.latency = Latency(latency_ms, latency_jitter_ms)
        app = create_app(self.state, self.latency)
        super().__init__(app, name="fake-discord", host=host, port=port)

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
