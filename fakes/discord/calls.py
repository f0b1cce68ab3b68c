"""The request/reply types shared by the REST and OAuth handlers."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..latency import Latency
from .models import DiscordError
from .state import Auth, FakeDiscordState

# aiohttp application keys (typed, instead of bare strings).
STATE = web.AppKey("fake_discord_state", FakeDiscordState)
GATEWAY_SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("gateway_sockets")
LATENCY = web.AppKey("latency", Latency)


@dataclass
class Call:
    """One parsed API request, as a handler sees it."""

    state: FakeDiscordState
    params: dict[str, str]
    query: Mapping[str, str]
    json: Any  # parsed JSON body, or None
    form: dict[str, str]  # parsed urlencoded body (the OAuth token endpoint)
    headers: Mapping[str, str]
    auth: Auth | None
    gateway_url: str  # ws://<the host the client used>/gateway


@dataclass
class Reply:
    status: int
    body: Any = None


Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    key: str  # rate-limit bucket
    major: str | None  # path parameter that scopes the bucket (guild_id, channel_id)
    auth: str  # "bot", "bearer", "any" (bot or bearer), "none"
    handler: Handler


def unauthorized() -> DiscordError:
    return DiscordError(401, "401: Unauthorized", 0)
