"""Settings come from the environment and fail loudly and clearly when they are wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from gateway.env import Settings
from tests.processes import ROOT

PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "a-long-random-production-secret-key-for-the-gateway-0123456789",
    "ALLOWED_HOSTS": "members.example.org",
    "APP_URL": "https://members.example.org",
    "STRIPE_SECRET_KEY": "sk_test_123",
    "STRIPE_WEBHOOK_SECRET": "whsec_123",
    "DISCORD_BOT_TOKEN": "bot-token",
    "DISCORD_CLIENT_ID": "1",
    "DISCORD_CLIENT_SECRET": "client-secret",
    "DISCORD_GUILD_ID": "2",
    "DISCORD_ROLE_SQUIRE_ID": "3",
    "DISCORD_ROLE_KNIGHT_ID": "4",
    "DISCORD_ROLE_LORD_ID": "5",
    "DISCORD_ROLE_DEBTOR_ID": "6",
    "DISCORD_INTRODUCTIONS_CHANNEL_ID": "7",
    "DISCORD_BILLING_SUPPORT_CHANNEL_ID": "8",
    "DISCORD_INVITE_URL": "https://discord.gg/example",
    "RESEND_API_KEY": "re_123",
    "TRUSTED_PROXY_COUNT": "1",
}


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_empty_string_means_unset() -> None:
    settings = Settings({"LOG_LEVEL": "", "PORT": "  "})
    assert settings.str("LOG_LEVEL", "INFO") == "INFO"
    assert settings.int("PORT", 8000) == 8000


def test_malformed_boolean_names_the_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match="STRIPE_LIVE_MODE must be a boolean"):
        Settings({"STRIPE_LIVE_MODE": "perhaps"}).bool("STRIPE_LIVE_MODE")


def test_malformed_integer_names_the_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXY_COUNT must be an integer"):
        Settings({"TRUSTED_PROXY_COUNT": "two"}).int("TRUSTED_PROXY_COUNT", 0)


def test_secret_read_from_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t\n")
    settings = Settings({"SECRET_KEY": "", "SECRET_KEY_FILE": str(secret_file)})
    assert settings.secret("SECRET_KEY", required=True) == "s3cr3t"


def test_unreadable_secret_file_is_reported(tmp_path: Path) -> None:
    settings = Settings({"SECRET_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY_FILE points at"):
        settings.secret("SECRET_KEY", required=True)


def test_production_refuses_to_start_without_a_secret() -> None:
    env = {**PRODUCTION, "SECRET_KEY": ""}
    result = run_manage(env, "check")
    assert result.returncode != 0
    assert "SECRET_KEY is required in this environment" in result.stderr


def test_production_refuses_a_malformed_boolean() -> None:
    result = run_manage({**PRODUCTION, "STRIPE_LIVE_MODE": "maybe"}, "check")
    assert result.returncode != 0
    assert "STRIPE_LIVE_MODE must be a boolean" in result.stderr


def test_production_names_missing_discord_settings() -> None:
    result = run_manage({**PRODUCTION, "DISCORD_GUILD_ID": ""}, "check")
    assert result.returncode != 0
    assert "DISCORD_GUILD_ID" in result.stderr


def test_live_key_requires_live_mode() -> None:
    result = run_manage({**PRODUCTION, "STRIPE_SECRET_KEY": "sk_live_abc"}, "check")
    assert result.returncode != 0
    assert "STRIPE_LIVE_MODE does not match STRIPE_SECRET_KEY" in result.stderr


def test_production_settings_pass_the_deploy_check() -> None:
    result = run_manage(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_development_needs_no_configuration() -> None:
    result = run_manage({"DJANGO_ENV": "development"}, "check")
    assert result.returncode == 0, result.stderr


# --- Real credentials only with real secrets and production-safe settings --------------------

LIVE = {"STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_LIVE_MODE": "true"}


@pytest.mark.parametrize("profile", [{}, {"DJANGO_ENV": "development"}])
def test_a_live_stripe_key_does_not_start_the_development_profile(profile) -> None:
    """DJANGO_ENV unset means development: DEBUG on, the repository's SECRET_KEY, insecure
    cookies and the public sandbox webhook secret. A live key must not run like that."""
    result = run_manage({**profile, **LIVE, "STRIPE_WEBHOOK_SECRET": "whsec_real"}, "check")
    assert result.returncode != 0
    assert "STRIPE_SECRET_KEY is a real credential" in result.stderr


@pytest.mark.parametrize(
    ("variable", "env"),
    [
        ("STRIPE_SECRET_KEY", {"STRIPE_SECRET_KEY": "sk_test_abc", "STRIPE_WEBHOOK_SECRET": "w"}),
        ("DISCORD_BOT_TOKEN", {"DISCORD_BOT_TOKEN": "real-bot"}),
        ("RESEND_API_KEY", {"RESEND_API_KEY": "re_abc"}),
    ],
)
def test_development_refuses_any_real_credential(variable, env) -> None:
    result = run_manage({"DJANGO_ENV": "development", **env}, "check")
    assert result.returncode != 0
    assert f"{variable} is a real credential" in result.stderr


def test_development_may_use_credentials_of_the_local_fakes() -> None:
    """The drills start development processes with keys for the fakes on this machine."""
    fakes = {
        "DJANGO_ENV": "development",
        "STRIPE_SECRET_KEY": "sk_test_fake000000000000000000000000",
        "STRIPE_API_BASE": "http://127.0.0.1:12111",
        "STRIPE_WEBHOOK_SECRET": "whsec_drill",
        "DISCORD_BOT_TOKEN": "fake-bot",
        "DISCORD_API_BASE": "http://localhost:12112/api/v10",
    }
    assert run_manage(fakes, "check").returncode == 0
    without_secret = run_manage({**fakes, "STRIPE_WEBHOOK_SECRET": ""}, "check")
    assert without_secret.returncode != 0
    assert "STRIPE_WEBHOOK_SECRET is required" in without_secret.stderr


def test_a_real_stripe_refuses_the_public_sandbox_webhook_secret() -> None:
    result = run_manage({**PRODUCTION, "STRIPE_WEBHOOK_SECRET": "whsec_sandbox"}, "check")
    assert result.returncode != 0
    assert "STRIPE_WEBHOOK_SECRET is the public sandbox secret" in result.stderr


@pytest.mark.parametrize(
    "variable",
    ["STRIPE_SECRET_KEY", "DISCORD_BOT_TOKEN", "DISCORD_CLIENT_SECRET", "DISCORD_GUILD_ID"],
)
def test_staging_never_runs_the_sandbox(variable) -> None:
    staging = {**PRODUCTION, "DJANGO_ENV": "staging", "RESEND_API_KEY": "", variable: ""}
    result = run_manage(staging, "check")
    assert result.returncode != 0
    assert variable in result.stderr


FORM_ACTION = (
    "from django.conf import settings; "
    "print(' '.join(settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['form-action']))"
)


def test_forms_may_lead_only_to_us_stripe_and_discord() -> None:
    # The CSP's form-action also governs the redirect after a POST (Checkout, the billing
    # portal, Discord's consent page), so those hosts are listed, and nothing else.
    live = run_manage(PRODUCTION, "shell", "-v", "0", "-c", FORM_ACTION)
    sandbox = run_manage({}, "shell", "-v", "0", "-c", FORM_ACTION)

    assert live.returncode == 0, live.stderr
    assert live.stdout.split() == [
        "'self'",
        "https://checkout.stripe.com",
        "https://billing.stripe.com",
        "https://discord.com",
    ]
    assert sandbox.returncode == 0, sandbox.stderr
    # The sandbox's fakes serve Checkout, the portal and the consent page themselves.
    assert sandbox.stdout.split() == ["'self'", "http://127.0.0.1:12111", "http://127.0.0.1:12112"]
