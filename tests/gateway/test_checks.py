"""Configuration mistakes show up in ``manage.py check`` with stable ids."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from gateway.checks import (
    check_deployment,
    check_discord_ids,
    check_stripe_prices,
    check_task_queue,
)


def ids(messages) -> list[str]:
    return [message.id for message in messages]


def test_the_default_configuration_passes():
    call_command("check", "--tag", "gateway")


def test_task_timeout_not_below_retry_is_an_error(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 90, "retry": 90}
    assert ids(check_task_queue()) == ["gateway.E001"]


def test_unlimited_task_attempts_is_an_error(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "max_attempts": 0}
    assert ids(check_task_queue()) == ["gateway.E002"]


def test_price_settings_may_be_empty_but_not_repeated(settings):
    """They only seed the catalogue: a deployment may build it in the admin instead."""
    settings.STRIPE_TEAM_SEAT_PRICE_ID = ""
    settings.STRIPE_INDIVIDUAL_PRICE_ID = ""
    assert ids(check_stripe_prices()) == []
    settings.STRIPE_TEAM_SEAT_PRICE_ID = settings.STRIPE_OWNER_SEAT_PRICE_ID
    assert ids(check_stripe_prices()) == ["gateway.E004"]


def test_two_managed_roles_with_one_id(settings):
    settings.DISCORD_ROLE_IDS = {**settings.DISCORD_ROLE_IDS, "debtor": "300000000000000001"}
    assert ids(check_discord_ids()) == ["gateway.E005"]


def test_a_role_name_pasted_instead_of_an_id(settings):
    settings.DISCORD_INTRODUCTIONS_CHANNEL_ID = "#introductions"
    (error,) = check_discord_ids()
    assert error.id == "gateway.E006"
    assert "DISCORD_INTRODUCTIONS_CHANNEL_ID" in error.msg


def test_deployed_app_url_must_be_https(settings):
    settings.DEPLOYED = True
    settings.APP_URL = "http://members.example.org"
    settings.SANDBOX = settings.DISCORD_SANDBOX = False
    assert ids(check_deployment()) == ["gateway.E007"]
    settings.APP_URL = "https://members.example.org"
    assert check_deployment() == []


def test_manage_check_fails_on_an_error(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 120, "retry": 90}
    with pytest.raises(SystemCheckError, match="gateway.E001"):
        call_command("check", "--tag", "gateway")
