"""Shared fixtures: fake servers, the journeys' world, staff personas, log capture.

The people themselves are built by ``tests/personas.py``; helpers that drive Stripe and Discord
live in ``tests/providers.py``. A suite's own conftest holds only fixtures no other suite uses.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from fakes.discord import seed as fake_discord_seed
from fakes.discord.server import FakeDiscordServer
from fakes.stripe.server import FakeStripeServer
from gateway.logging import build_logging
from tests import personas
from tests.journeys import World


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache (rate-limit counters live there)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def _flush_postgres_by_delete() -> Iterator[None]:
    """On PostgreSQL, a transactional test's teardown empties the tables with DELETE, not
    Django's TRUNCATE: TRUNCATE gives each of the ~100 tables (dj-stripe's included) new files,
    about 0.4 s per teardown on a quiet machine and several seconds on a busy one, where DELETE
    of the few rows a test leaves takes 0.04 s. The result is the same empty tables: every
    foreign key Django creates is deferred to the commit that ends the flush, and TRUNCATE
    without RESTART IDENTITY keeps the sequences too. A flush that resets sequences, or that
    cascades from only some of the tables, still truncates."""
    from django.db import connection
    from django.db.backends.postgresql.operations import DatabaseOperations

    if connection.vendor != "postgresql":
        yield
        return
    truncate = DatabaseOperations.sql_flush

    def sql_flush(ops, style, tables, *, reset_sequences=False, allow_cascade=False):
        every_table = not allow_cascade or set(tables) >= set(
            ops.connection.introspection.django_table_names(only_existing=True)
        )
        if reset_sequences or not every_table:
            return truncate(
                ops, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        delete = f"{style.SQL_KEYWORD('DELETE')} {style.SQL_KEYWORD('FROM')}"
        return [f"{delete} {style.SQL_FIELD(ops.quote_name(table))};" for table in tables]

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = truncate


DB_FIXTURES = frozenset({"db", "transactional_db", "django_db_reset_sequences", "live_server"})


@pytest.fixture(autouse=True)
def _plan_catalogue(request: pytest.FixtureRequest) -> None:
    """Every test with a database sells what a fresh deployment sells: the plans the data
    migration imports from the price settings."""
    if request.node.get_closest_marker("django_db") or DB_FIXTURES & set(request.fixturenames):
        request.getfixturevalue("_django_db_helper")
        personas.plan_catalogue()


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
    settings.DISCORD_ROLE_IDS = dict(personas.ROLE_IDS)
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


@pytest.fixture
def world(client: Client, stripe_server: FakeStripeServer, discord: Any) -> World:
    """Stripe, Discord and the gateway of one journey (``tests/journeys.py``)."""
    return World(client, stripe_server, discord)


# --- staff ----------------------------------------------------------------------------------


@pytest.fixture
def support_group(db: Any) -> Group:
    """The group the data migration creates (created here too under ``--nomigrations``)."""
    personas.staff_groups()
    return Group.objects.get(name="Support")


@pytest.fixture
def superuser(db: Any) -> Any:
    return personas.superuser()


@pytest.fixture
def support_user(support_group: Group) -> Any:
    return personas.staff_user()


@pytest.fixture
def admin_web(superuser: Any) -> Client:
    return personas.client_for(superuser)


@pytest.fixture
def support_web(support_user: Any) -> Client:
    return personas.client_for(support_user)


@pytest.fixture
def queued_processing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Store and enqueue only: the view wakes the worker, no task runs inline."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    yield
