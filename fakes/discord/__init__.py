"""A fake Discord: REST API v10, OAuth2 and a minimal Gateway, for tests and sandbox mode.

Standalone (aiohttp + stdlib, no Django). Start it in-process with `FakeDiscordServer`
(background thread, free port) or as `python -m fakes.discord --port 12112`. The default
world, its fixed ids and tokens are in `fakes/discord/seed.py`; the control API in
`fakes/discord/control.py`; docs in `fakes/discord/README.md`.
"""

from __future__ import annotations

from .models import DiscordError
from .seed import Seed
from .server import FakeDiscordServer
from .state import FakeDiscordState

__all__ = ["DiscordError", "FakeDiscordServer", "FakeDiscordState", "Seed"]
