"""Shared fixtures: personas, fake servers and helpers used across the suites."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from fakes.discord import seed as fake_discord_seed
from fakes.discord.server import FakeDiscordServer
from fakes.stripe.server import FakeStripeServer
from gateway.logging import build_logging

# The fake guild's managed roles, as DISCORD_ROLE_IDS names them.
FAKE_ROLE_IDS = {
    "squire": fake_discord_seed.ROLE_SQUIRE_ID,
    "knight": fake_discord_seed.ROLE_KNIGHT_ID,
    "lord": fake_discord_seed.ROLE_LORD_ID,
    "debtor": fake_discord_seed.ROLE_DEBTOR_ID,
}


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache (rate-limit counters live there)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def stripe_server(settings: Any) -> Iterator[FakeStripeServer]:
    """The fake Stripe on a free port, with stripe-python and dj-stripe pointed at it."""
    from billing.stripe_client import configure_stripe

    with FakeStripeServer(webhook_secret=settings.STRIPE_WEBHOOK_SECRET) as srv:
        configure_stripe(api_base=srv.url)
        try:
            yield srv
        finally:
            configure_stripe()


@pytest.fixture(scope="session")
def discord_server() -> Iterator[FakeDiscordServer]:
    with FakeDiscordServer() as server:
        yield server


@pytest.fixture
def discord(discord_server: FakeDiscordServer, settings: Any) -> Any:
    """The fake Discord's state, fresh, with every Discord setting pointing at the fake."""
    discord_server.state.reset()
    for name, value in discord_server.settings().items():
        setattr(settings, name, value)
    settings.DISCORD_ROLE_IDS = dict(FAKE_ROLE_IDS)
    settings.DISCORD_ADMIN_CHANNEL_ID = fake_discord_seed.CHANNEL_ADMIN_ALERTS_ID
    settings.DISCORD_TIMEOUT_SECONDS = 5.0
    return discord_server.state


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Every log record of the test, rendered by the production JSON formatter."""
    config = build_logging("json", "INFO")["formatters"]["structured"]
    factory = config.pop("()")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(factory(**config))
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)
