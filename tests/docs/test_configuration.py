"""docs/CONFIGURATION.md and .env.example list exactly the variables the code reads."""

from __future__ import annotations

import re

from tests.processes import ROOT

READERS = ("gateway/settings.py", "gunicorn.conf.py")
# env.str("NAME", …), env.secret(\n    "NAME", …), env.raw('NAME') …
ENV_CALL = re.compile(
    r"env\.(?:str|secret|bool|int|float|list|choice|db|raw)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']"
)
# Variables only the test runner sets (not deployment settings).
TEST_ONLY = {"TEST_DATABASE_NAME", "Q_SYNC"}


def names_read() -> set[str]:
    found: set[str] = set()
    for path in READERS:
        found |= set(ENV_CALL.findall((ROOT / path).read_text()))
    return found


def documented() -> set[str]:
    text = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text, flags=re.M))


def in_env_example() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.M))


def test_the_parser_sees_the_settings_we_know_about():
    read = names_read()
    assert {"SECRET_KEY", "DISCORD_API_BASE", "STRIPE_WEBHOOK_SECRET", "HOST", "DJANGO_ENV"} <= read
    assert len(read) > 80


def test_every_variable_read_is_documented_and_every_documented_one_is_read():
    read, docs = names_read(), documented()
    assert sorted(read - docs) == [], "read by the code but missing from docs/CONFIGURATION.md"
    assert sorted(docs - read) == [], "in docs/CONFIGURATION.md but no longer read"


def test_env_example_lists_every_variable_and_nothing_else():
    read, example = names_read(), in_env_example()
    assert sorted(read - example) == [], "missing from .env.example"
    assert sorted(example - read) == [], "in .env.example but no longer read"
    assert example >= TEST_ONLY  # listed, so nobody wonders; empty by default


def test_every_contract_setting_of_the_spec_is_read():
    """SPEC §3's settings (the documented contract) all exist."""
    contract = {
        "DJANGO_ENV",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "APP_URL",
        "DATABASE_URL",
        "REDIS_URL",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_LIVE_MODE",
        "STRIPE_API_BASE",
        "STRIPE_INDIVIDUAL_PRICE_ID",
        "STRIPE_OWNER_SEAT_PRICE_ID",
        "STRIPE_TEAM_SEAT_PRICE_ID",
        "DISCORD_API_BASE",
        "DISCORD_OAUTH_AUTHORIZE_URL",
        "DISCORD_GATEWAY_URL",
        "DISCORD_CLIENT_ID",
        "DISCORD_CLIENT_SECRET",
        "DISCORD_BOT_TOKEN",
        "DISCORD_GUILD_ID",
        "DISCORD_ROLE_SQUIRE_ID",
        "DISCORD_ROLE_KNIGHT_ID",
        "DISCORD_ROLE_LORD_ID",
        "DISCORD_ROLE_DEBTOR_ID",
        "DISCORD_INTRODUCTIONS_CHANNEL_ID",
        "DISCORD_BILLING_SUPPORT_CHANNEL_ID",
        "DISCORD_ADMIN_CHANNEL_ID",
        "DISCORD_INVITE_URL",
        "EMAIL_BACKEND",
        "EMAIL_FILE_PATH",
        "RESEND_API_KEY",
        "DEFAULT_FROM_EMAIL",
        "EMAIL_REPLY_TO",
        "ADMIN_EMAIL",
        "SENTRY_DSN",
        "SENTRY_TRACES_SAMPLE_RATE",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "TRUSTED_PROXY_COUNT",
    }
    assert sorted(contract - names_read()) == []
