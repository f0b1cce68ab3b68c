"""Forwarded headers count only when our own proxy sent them.

A client that reaches gunicorn directly (or through anything that is not one of
``FORWARDED_ALLOW_IPS``) must not be able to choose the address the rate limits count, claim
HTTPS with ``X-Forwarded-Proto``, or put another address into the log lines.
"""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from django.test import Client
from django.urls import reverse

from tests.observability import log_lines

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"
ATTACKER = "203.0.113.66"


@pytest.fixture
def behind_one_proxy(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.FORWARDED_ALLOW_IPS = (ip_network(PROXY),)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The address limit: a sprayer from one address is stopped whatever emails it types.
    settings.RATELIMIT_LOGIN_ADDRESS = "3/h"
    return settings


def _login(client: Client, n: int, **headers: str) -> int:
    return client.post(
        reverse("members:login"), {"email": f"u{n}@example.org", "password": "x"}, **headers
    ).status_code


def test_a_direct_client_cannot_rotate_x_forwarded_for_past_the_login_limit(behind_one_proxy):
    client = Client()
    statuses = [
        _login(client, n, REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
        for n in range(5)
    ]
    assert 429 not in statuses[:3]
    assert statuses[3:] == [429, 429]


def test_the_proxy_still_tells_clients_apart(behind_one_proxy):
    client = Client()
    for n in range(3):
        _login(client, n, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert _login(client, 9, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.1") == 429
    assert _login(client, 9, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.2") != 429


def test_a_direct_client_cannot_claim_https(behind_one_proxy, client):
    behind_one_proxy.SECURE_SSL_REDIRECT = True
    direct = client.get("/login/", REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_PROTO="https")
    assert direct.status_code == 301
    assert direct["Location"].startswith("https://")
    proxied = client.get("/login/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200


def test_a_direct_client_cannot_set_the_request_id(behind_one_proxy, client):
    direct = client.get("/health/live", REMOTE_ADDR=ATTACKER, HTTP_X_REQUEST_ID="chosen-id-1")
    assert direct["X-Request-ID"] != "chosen-id-1"
    proxied = client.get("/health/live", REMOTE_ADDR=PROXY, HTTP_X_REQUEST_ID="edge-id-2")
    assert proxied["X-Request-ID"] == "edge-id-2"


@pytest.mark.parametrize(
    ("peer", "forwarded", "counted"),
    [
        # Through our proxy: the entry it appended, not what the client wrote before it.
        (PROXY, "1.2.3.4, 198.51.100.7", "198.51.100.7"),
        # Straight to gunicorn: the connection's address, whatever the headers say.
        (ATTACKER, "1.2.3.4, 198.51.100.7", ATTACKER),
    ],
)
def test_the_logged_ip_is_the_address_the_rate_limits_count(
    behind_one_proxy, json_logs, peer, forwarded, counted
):
    behind_one_proxy.RATELIMIT_LOGIN_ADDRESS = "1/h"
    client = Client()
    headers = {"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded, "HTTP_X_REAL_IP": "9.9.9.9"}
    assert _login(client, 1, **headers) != 429
    # The limit counted `counted`: another request from it is refused, another address is not.
    assert _login(client, 2, **headers) == 429
    lines = [line for line in log_lines(json_logs) if line["event"] == "request_started"]
    assert lines and {line["ip"] for line in lines} == {counted}
