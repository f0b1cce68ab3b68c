"""Configuration problems reported as Django system checks (``manage.py check``).

Settings parsing already stops start-up on malformed or missing values; these checks catch
combinations that parse fine but would misbehave at run time.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

from gateway.schema import missing_cache_tables


def check_task_queue(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    cluster = settings.Q_CLUSTER
    errors = []
    if cluster.get("timeout") is not None and cluster["timeout"] >= cluster.get("retry", 60):
        errors.append(
            Error(
                "Q_CLUSTER timeout must be lower than retry.",
                hint="Otherwise the ORM broker presents a still-running task again "
                "(set Q_TIMEOUT below Q_RETRY).",
                id="gateway.E001",
            )
        )
    if not cluster.get("max_attempts"):
        errors.append(
            Error(
                "Q_CLUSTER max_attempts must be a positive number.",
                hint="0 retries a failing task forever (set Q_MAX_ATTEMPTS).",
                id="gateway.E002",
            )
        )
    return errors


def check_stripe_prices(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """The three price settings only seed the plan catalogue (data migration ``billing 0009``);
    a deployment may leave them empty and build its catalogue in the admin. Those set must
    differ: one price plays one role."""
    prices = {
        "STRIPE_INDIVIDUAL_PRICE_ID": settings.STRIPE_INDIVIDUAL_PRICE_ID,
        "STRIPE_OWNER_SEAT_PRICE_ID": settings.STRIPE_OWNER_SEAT_PRICE_ID,
        "STRIPE_TEAM_SEAT_PRICE_ID": settings.STRIPE_TEAM_SEAT_PRICE_ID,
    }
    errors = []
    set_values = [value for value in prices.values() if value]
    if len(set(set_values)) != len(set_values):
        errors.append(
            Error(
                "The Stripe price ids must all differ.",
                hint="A price plays one role in the plan catalogue it seeds.",
                id="gateway.E004",
            )
        )
    return errors


def check_discord_ids(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    roles = {f"DISCORD_ROLE_{k.upper()}_ID": v for k, v in settings.DISCORD_ROLE_IDS.items()}
    errors = []
    set_values = [value for value in roles.values() if value]
    if len(set(set_values)) != len(set_values):
        errors.append(
            Error(
                "The four Discord role ids must all differ.",
                hint=", ".join(f"{name}={value}" for name, value in roles.items()),
                id="gateway.E005",
            )
        )
    snowflakes = {
        **roles,
        "DISCORD_GUILD_ID": settings.DISCORD_GUILD_ID,
        "DISCORD_INTRODUCTIONS_CHANNEL_ID": settings.DISCORD_INTRODUCTIONS_CHANNEL_ID,
        "DISCORD_BILLING_SUPPORT_CHANNEL_ID": settings.DISCORD_BILLING_SUPPORT_CHANNEL_ID,
        "DISCORD_ADMIN_CHANNEL_ID": settings.DISCORD_ADMIN_CHANNEL_ID,
    }
    errors.extend(
        Error(
            f"{name} is not a Discord id ({value!r}).",
            hint="Discord ids are numbers (enable Developer Mode and use Copy ID).",
            id="gateway.E006",
        )
        for name, value in snowflakes.items()
        if value and not value.isdigit()
    )
    return errors


def check_deployment(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    messages: list[Error | Warning] = []
    if not settings.DEPLOYED:
        return messages
    if not settings.APP_URL.startswith("https://"):
        messages.append(
            Error(
                "APP_URL must use https when deployed.",
                hint="Links in emails and DMs and the OAuth callback are built from it.",
                id="gateway.E007",
            )
        )
    if settings.SANDBOX or settings.DISCORD_SANDBOX:
        messages.append(
            Warning(
                "Running in sandbox mode in a deployed environment.",
                hint="Set STRIPE_SECRET_KEY and DISCORD_BOT_TOKEN for real services.",
                id="gateway.W001",
            )
        )
    return messages


def check_cache_table(
    app_configs: Any = None, databases: list[str] | None = None, **kwargs: Any
) -> list[Error]:
    """The database cache's table exists (``manage.py migrate`` creates it).

    Runs when a process starts (qcluster, runbot, any command; the web process calls it from
    ``gateway/wsgi.py``). ``migrate`` runs the checks for the database it is about to migrate
    (``databases`` set): there the table is missing by design until ``migrate`` has run.
    """
    if databases is not None:
        return []
    return [
        Error(
            f"The cache table {table!r} does not exist.",
            hint="Run `manage.py migrate`: it creates the database cache's table "
            "(rate limits, breakers and health need it).",
            id="gateway.E008",
        )
        for table in missing_cache_tables()
    ]


def register_all() -> None:
    for check in (
        check_task_queue,
        check_stripe_prices,
        check_discord_ids,
        check_deployment,
        check_cache_table,
    ):
        register(check, "gateway")
