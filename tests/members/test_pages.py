"""Public pages, theming, rate limits and accessibility basics."""

from __future__ import annotations

import re
from ipaddress import ip_network

import pytest
from django.test import Client
from django.urls import reverse

from members.models import User
from ops.models import Notification
from tests.personas import SIGNUP_PASSWORD as PASSWORD

pytestmark = pytest.mark.django_db


def test_landing_lists_plan_names_without_mirrored_prices(client):
    response = client.get(reverse("billing:landing"))

    assert response.status_code == 200
    body = response.content.decode()
    for name in ("Individual membership", "Company plan"):
        assert name in body
    assert reverse("billing:company") in body


def test_theme_stylesheet_serves_configured_colours(client, settings):
    settings.COMMUNITY_PRIMARY_COLOR = "#123456"
    settings.COMMUNITY_ACCENT_COLOR = "gold"

    response = client.get(reverse("members:theme_css"))

    assert response["Content-Type"].startswith("text/css")
    assert response.content.decode().strip() == ":root{--primary:#123456;--accent:gold;}"


def test_theme_stylesheet_refuses_css_injection(client, settings):
    settings.COMMUNITY_PRIMARY_COLOR = "red;}body{display:none"

    body = client.get(reverse("members:theme_css")).content.decode()

    assert "display" not in body
    assert "--primary:#7a1f2b" in body


def test_pages_have_skip_link_labels_and_no_inline_script_or_style(client):
    pages = ("signup", "login", "magic_link", "password_reset")
    for name in ("billing:landing", *(f"members:{page}" for page in pages)):
        body = client.get(reverse(name)).content.decode()
        assert 'class="skip-link" href="#main"' in body, name
        assert "<script" not in body and "<style" not in body and " style=" not in body, name
        assert reverse("members:theme_css") in body
        for input_id in re.findall(
            r'<input[^>]*type="(?:email|password|text|number)"[^>]*id="([^"]+)"', body
        ):
            assert f'<label for="{input_id}">' in body, (name, input_id)


def test_content_security_policy_forbids_inline_scripts(client):
    policy = client.get(reverse("billing:landing"))["Content-Security-Policy"]

    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    form_action = re.search(r"form-action ([^;]*)", policy).group(1).split()
    assert "*" not in form_action and "'self'" in form_action


def _post_many(client, url: str, data: dict, times: int) -> list[int]:
    return [client.post(url, data).status_code for _ in range(times)]


def test_login_is_rate_limited_per_client_ip(client, alice, settings):
    settings.RATELIMIT_LOGIN_ADDRESS = "3/m"
    url = reverse("members:login")

    codes = [
        client.post(url, {"email": f"user{n}@example.org", "password": "x"}).status_code
        for n in range(4)
    ]

    assert codes == [400, 400, 400, 429]
    limited = client.post(url, {"email": "alice@example.org", "password": PASSWORD})
    assert limited.status_code == 429
    assert "Too many attempts" in limited.content.decode()
    assert limited["Retry-After"] == "60"
    # Another client address is not affected.
    other = client.post(
        url, {"email": "alice@example.org", "password": PASSWORD}, REMOTE_ADDR="10.0.0.9"
    )
    assert other.status_code == 302


def test_login_is_rate_limited_per_email_from_one_address(client, alice, settings):
    settings.RATELIMIT_LOGIN = "3/m"
    url = reverse("members:login")

    codes = [
        client.post(url, {"email": "ALICE@example.org", "password": "x"}).status_code
        for n in range(4)
    ]

    assert codes == [400, 400, 400, 429]


def test_rate_limit_uses_real_client_ip_behind_trusted_proxy(client, alice, settings):
    settings.RATELIMIT_LOGIN_ADDRESS = "2/m"
    settings.TRUSTED_PROXY_COUNT = 1
    settings.FORWARDED_ALLOW_IPS = (ip_network("10.1.1.1"),)
    url = reverse("members:login")

    def attempt(client_ip: str, n: int) -> int:
        return client.post(
            url,
            {"email": f"u{n}@example.org", "password": "x"},
            REMOTE_ADDR="10.1.1.1",  # the proxy
            HTTP_X_FORWARDED_FOR=f"1.2.3.4, {client_ip}",  # client-sent part is ignored
        ).status_code

    assert [attempt("203.0.113.7", n) for n in range(3)] == [400, 400, 429]
    assert attempt("203.0.113.8", 9) == 400


def test_signup_is_rate_limited(client, settings):
    settings.RATELIMIT_SIGNUP = "2/h"
    url = reverse("members:signup")

    # A fresh browser each time (a signed-up browser is logged in), same client address.
    codes = [
        Client()
        .post(
            url,
            {"email": f"new{n}@example.org", "password": PASSWORD, "password_confirm": PASSWORD},
        )
        .status_code
        for n in range(3)
    ]

    assert codes == [302, 302, 429]
    assert User.objects.count() == 2


def test_magic_link_requests_are_rate_limited(client, alice, settings):
    settings.RATELIMIT_MAGIC_LINK = "2/m"

    codes = _post_many(client, reverse("members:magic_link"), {"email": "alice@example.org"}, 3)

    assert codes == [200, 200, 429]
    assert Notification.objects.filter(kind="magic_link").count() == 2


def test_password_reset_requests_are_rate_limited(client, alice, settings):
    settings.RATELIMIT_PASSWORD_RESET = "2/m"

    codes = _post_many(client, reverse("members:password_reset"), {"email": "alice@example.org"}, 3)

    assert codes == [302, 302, 429]
    assert Notification.objects.filter(kind="password_reset").count() == 2
