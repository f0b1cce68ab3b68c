"""The Discord REST client against the fake Discord over HTTP: waits, retries, refusals."""

from __future__ import annotations

import time

import pytest

from discordsync.client import (
    DiscordCircuitOpen,
    DiscordPermanentError,
    DiscordTransientError,
    get_client,
)
from tests.personas import LANCELOT, ROLE_IDS


def _role_requests(discord, method="PUT"):
    return discord.requests(method=method, path_prefix=f"/guilds/{discord.guild_id}/members/")


def test_writes_carry_the_bot_token_and_an_audit_reason(discord):
    get_client().add_role(LANCELOT, ROLE_IDS["knight"], reason="Membership Gateway: test")
    assert discord.member_roles(LANCELOT) == [ROLE_IDS["knight"]]
    [entry] = _role_requests(discord)
    assert entry["status"] == 204
    assert entry["auth"] == "bot"
    assert entry["reason"] == "Membership Gateway: test"


def test_429_is_honoured_and_retried(discord):
    discord.add_fault(f"/guilds/{discord.guild_id}/members", 429, method="PUT", retry_after=0.4)
    started = time.monotonic()
    get_client().add_role(LANCELOT, ROLE_IDS["squire"], reason="test")
    assert time.monotonic() - started >= 0.4
    statuses = [e["status"] for e in _role_requests(discord)]
    assert statuses == [429, 204]
    assert discord.member_roles(LANCELOT) == [ROLE_IDS["squire"]]


def test_bucket_headers_pace_requests_instead_of_collecting_429s(discord):
    discord.set_rate_limit("guild_member_role", 2, 1.0)
    client = get_client()
    for name in ("squire", "knight", "lord"):
        client.add_role(LANCELOT, ROLE_IDS[name], reason="test")
    statuses = [e["status"] for e in _role_requests(discord)]
    assert statuses == [204, 204, 204]


def test_5xx_is_retried_with_backoff(discord):
    discord.add_fault(f"/guilds/{discord.guild_id}/members", 502, method="GET", count=2)
    member = get_client().get_member(LANCELOT)
    assert member["user"]["id"] == LANCELOT
    statuses = [e["status"] for e in discord.requests(method="GET")]
    assert statuses == [502, 502, 200]


def test_persistent_5xx_gives_up_after_bounded_retries(discord):
    discord.add_fault(
        f"/guilds/{discord.guild_id}/members", 503, method="GET", count=None, seconds=30
    )
    with pytest.raises(DiscordTransientError):
        get_client().get_member(LANCELOT)
    assert len(discord.requests(method="GET")) == get_client().max_retries + 1


@pytest.mark.parametrize("status", [401, 403, 404])
def test_permanent_errors_are_never_retried(discord, status):
    discord.add_fault(
        f"/guilds/{discord.guild_id}/members", status, method="PUT", count=None, seconds=30
    )
    with pytest.raises(DiscordPermanentError) as raised:
        get_client().add_role(LANCELOT, ROLE_IDS["knight"], reason="test")
    assert raised.value.status == status
    assert len(_role_requests(discord)) == 1


def test_breaker_opens_on_invalid_requests_and_closes_after_a_good_probe(discord, settings):
    settings.DISCORD_BREAKER_THRESHOLD = 5
    settings.DISCORD_BREAKER_COOLDOWN_SECONDS = 1
    client = get_client()
    discord.add_fault(
        f"/guilds/{discord.guild_id}/members", 403, method="PUT", count=None, seconds=30
    )
    for _ in range(5):
        with pytest.raises(DiscordPermanentError):
            client.add_role(LANCELOT, ROLE_IDS["knight"], reason="test")
    assert client.breaker.is_open()

    # Open: refused at once, nothing reaches Discord.
    before = len(discord.requests())
    with pytest.raises(DiscordCircuitOpen):
        client.get_member(LANCELOT)
    assert len(discord.requests()) == before

    # After the cool-down one probe goes through; a valid answer closes the breaker.
    time.sleep(1.1)
    discord.clear_faults()
    assert client.get_member(LANCELOT) is not None
    assert not client.breaker.is_open()
    assert client.breaker.invalid_count() == 0
    client.add_role(LANCELOT, ROLE_IDS["knight"], reason="test")
    assert discord.member_roles(LANCELOT) == [ROLE_IDS["knight"]]


def test_a_failed_probe_reopens_the_breaker(discord, settings):
    settings.DISCORD_BREAKER_THRESHOLD = 2
    settings.DISCORD_BREAKER_COOLDOWN_SECONDS = 1
    client = get_client()
    discord.add_fault(f"/guilds/{discord.guild_id}/members", 401, count=None, seconds=30)
    for _ in range(2):
        with pytest.raises(DiscordPermanentError):
            client.get_member(LANCELOT)
    time.sleep(1.1)
    with pytest.raises(DiscordPermanentError):  # the probe itself
        client.get_member(LANCELOT)
    with pytest.raises(DiscordCircuitOpen):
        client.get_member(LANCELOT)


def test_unknown_member_is_none_and_dms_closed_is_permanent(discord):
    client = get_client()
    assert client.get_member("999999999999999999") is None
    discord.set_dms_closed(LANCELOT)
    with pytest.raises(DiscordPermanentError) as raised:
        client.send_dm(LANCELOT, "Hail")
    assert raised.value.code == 50007
