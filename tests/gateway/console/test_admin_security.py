"""Admin login rate limit, and no secret anywhere in the admin's pages."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from django.conf import settings
from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from djstripe.models import WebhookEndpoint

from billing.models import FailureEpisode, StripeEventInbox
from members.models import Invite, SeatTier, User
from ops.models import FeatureFlag, GatewayConfig, Heartbeat, Notification, ReconciliationRun
from tests import personas
from tests.personas import LANCELOT, STAFF_PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")


@pytest.fixture
def tight_limit(settings):
    settings.RATELIMIT_ADMIN_LOGIN = "3/15m"


def attempt(client, username: str, ip: str, password: str = "wrong password!"):
    return client.post(
        LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip, follow=False
    )


def test_admin_is_served_at_the_configured_url():
    assert f"/{settings.ADMIN_URL}login/" == LOGIN


def test_login_is_limited_per_client_ip(client, superuser, tight_limit):
    for i in range(3):
        assert attempt(client, f"guess{i}@example.com", "203.0.113.9").status_code == 200
    blocked = attempt(client, "root@example.com", "203.0.113.9", STAFF_PASSWORD)
    assert blocked.status_code == 429
    assert b"Too many attempts" in blocked.content
    assert "_auth_user_id" not in client.session  # even the right password does not log in
    # Another address is not affected.
    assert attempt(client, "root@example.com", "198.51.100.7", STAFF_PASSWORD).status_code == 302


def test_login_is_limited_per_username_across_addresses(client, superuser, tight_limit):
    for i in range(3):
        attempt(client, "ROOT@example.com", f"203.0.113.{i + 1}")
    assert attempt(client, "root@example.com", "203.0.113.99").status_code == 429


def test_limit_uses_the_real_client_ip_behind_the_trusted_proxy(client, settings, tight_limit):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.FORWARDED_ALLOW_IPS = (ip_network("10.0.0.1"),)
    for i in range(3):
        client.post(
            LOGIN,
            {"username": f"u{i}@example.com", "password": "nope nope"},
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i + 1}",
        )
    # Three different clients behind one proxy: none of them is limited yet.
    fresh = client.post(
        LOGIN,
        {"username": "u9@example.com", "password": "nope nope"},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="192.0.2.50",
    )
    assert fresh.status_code == 200


def _urls_for(model_admin, obj) -> list[str]:
    opts = model_admin.model._meta
    urls = []
    for name, args in (("changelist", []), ("change", [obj.pk] if obj else None)):
        if args is None:
            continue
        try:
            urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_{name}", args=args))
        except NoReverseMatch:
            continue
    return urls


def test_no_password_hash_token_or_secret_on_any_admin_page(admin_web, superuser, discord):
    now = timezone.now()
    member = personas.member("lancelot", discord_id=LANCELOT)
    team = personas.company("Camelot Ltd")
    token = "s3cr3t-invite-token-" + "q" * 40
    Invite.objects.create(team=team, tier=SeatTier.TEAM, token=token)
    GatewayConfig.load()
    FeatureFlag.objects.get_or_create(key="require_introduction")
    WebhookEndpoint.objects.create(
        id="we_admin_crawl",
        url="https://gateway.example/stripe/webhook/",
        secret=settings.STRIPE_WEBHOOK_SECRET,
        livemode=False,
        enabled_events=["*"],
    )
    Heartbeat.objects.create(name="worker", beat_at=now)
    ReconciliationRun.objects.create(status="clean", started_at=now, finished_at=now)
    StripeEventInbox.objects.create(
        event_id="evt_1", type="invoice.paid", body="{}", received_at=now
    )
    FailureEpisode.objects.create(subscription_id="sub_x", opened_at=now, grace_ends_at=now)
    Notification.objects.create(key="n1", channel="email", kind="welcome", recipient="a@b.c")

    secrets = {
        "password hash": superuser.password,
        "member password hash": member.user.password,
        "invite token": token,
        "SECRET_KEY": settings.SECRET_KEY,
        "STRIPE_SECRET_KEY": settings.STRIPE_SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": settings.STRIPE_WEBHOOK_SECRET,
        "DISCORD_BOT_TOKEN": settings.DISCORD_BOT_TOKEN,
        "DISCORD_CLIENT_SECRET": settings.DISCORD_CLIENT_SECRET,
    }
    hash_prefixes = ("md5$", "argon2", "pbkdf2_sha256$")
    pages = [reverse("admin:index"), reverse("admin_dashboard")]
    for model, model_admin in admin.site._registry.items():
        pages += _urls_for(model_admin, model._default_manager.first())
    pages.append(reverse("admin:members_user_change", args=[member.user.pk]))

    crawled = 0
    for url in pages:
        response = admin_web.get(url)
        assert response.status_code in (200, 302), url
        html = response.content.decode()
        for what, value in secrets.items():
            assert value not in html, f"{what} on {url}"
        for prefix in hash_prefixes:
            assert prefix not in html, f"{prefix} on {url}"
        crawled += 1
    assert crawled > 40


def test_user_page_offers_a_password_reset_link_not_the_hash(admin_web, superuser):
    user = User.objects.create_user("knight@example.com", "a fine passphrase 1")
    html = admin_web.get(reverse("admin:members_user_change", args=[user.pk])).content.decode()
    assert "set a new password" in html
    assert reverse("admin:auth_user_password_change", args=[user.pk]) in html
    assert "salt" not in html and "hash" not in html.lower().replace("hashing", "")
