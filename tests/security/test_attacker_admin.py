"""What an attacker tries in the admin: filter lookups in the query string as an oracle.

The admin turns query-string parameters into ORM lookups. Without a guard,
``?token__startswith=a`` answers "1 invite" or "0 invites", and a few dozen requests recover a
token; the same holds for API keys, webhook secrets, outbox links and password hashes (across
relations too: ``user__password__startswith``). These tests walk every registered model's
changelist as a Support user and as a superuser and try such lookups on every field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib import admin
from django.db import models
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from djstripe.models import APIKey, WebhookEndpoint

from billing.models import StripeEventInbox
from members.models import Invite, SeatTier
from ops.admin_guard import GuardedAdminMixin
from ops.models import AuditLog, Notification
from tests import personas
from tests.personas import LANCELOT

pytestmark = pytest.mark.django_db

# What the attacker is after: fields named like secrets, and every JSON document.
SECRET_NAME = re.compile(r"password|token|secret|body|context")
LOOKUPS = ("startswith", "contains", "regex", "gt")
INVITE_TOKEN = "Zq7-invite-token-" + "x" * 30
MAGIC_LINK = f"{settings.APP_URL}/login/link/verify/?token=Mq9magic"
SEAT_LINK = f"{settings.APP_URL}/invite/{INVITE_TOKEN}/"
API_KEY = "sk_test_" + "K" * 24 + "tail"
ENDPOINT_SECRET = "whsec_" + "W" * 24 + "tail"


def is_secret(field: Any) -> bool:
    return bool(SECRET_NAME.search(field.name)) or isinstance(field, models.JSONField)


@pytest.fixture
def seeded(superuser, support_user, discord) -> None:  # noqa: F811
    """One row of everything that holds a secret, plus ordinary members and a team."""
    now = timezone.now()
    personas.member("lancelot", discord_id=LANCELOT)
    team = personas.company("Camelot Ltd")
    Invite.objects.create(team=team, tier=SeatTier.TEAM, token=INVITE_TOKEN, email="g@x.org")
    Notification.objects.create(
        key="magic:1",
        channel="email",
        kind="magic_link",
        recipient="lancelot@example.com",
        context={"link": MAGIC_LINK, "expires_minutes": 15},
    )
    Notification.objects.create(
        key="invite:1",
        channel="email",
        kind="seat_invite",
        recipient="g@x.org",
        context={"link": SEAT_LINK, "team_name": "Camelot Ltd"},
    )
    StripeEventInbox.objects.create(
        event_id="evt_1", type="invoice.paid", body='{"id": "evt_1"}', received_at=now
    )
    AuditLog.objects.create(actor_type="system", action="probe", details={"k": "v"})
    APIKey.objects.create(secret=API_KEY, type="secret", livemode=False, name="main")
    WebhookEndpoint.objects.create(
        id="we_probe",
        url="https://gateway.example/stripe/webhook/",
        secret=ENDPOINT_SECRET,
        livemode=False,
        enabled_events=["*"],
    )


def attacker(user: Any) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def changelists() -> Iterator[tuple[type[models.Model], str]]:
    for model in list(admin.site._registry):
        opts = model._meta
        try:
            yield model, reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        except NoReverseMatch:
            continue


def secret_paths(model: type[models.Model]) -> Iterator[tuple[str, Any]]:
    """Lookup paths to a secret: the model's own secret and JSON fields, and fields named like
    a secret one or two relations away (``user__password``, ``team__invites__token``)."""

    def walk(current: type[models.Model], prefix: str, depth: int) -> Iterator[tuple[str, Any]]:
        for field in current._meta.get_fields():
            path = f"{prefix}{field.name}"
            if field.is_relation and field.related_model is not None:
                if depth < 2:
                    yield from walk(field.related_model, f"{path}__", depth + 1)
            elif SECRET_NAME.search(field.name) or (depth == 0 and is_secret(field)):
                yield path, field

    yield from walk(model, "", 0)


def prefix_of(model: type[models.Model], lookup: str) -> str:
    """The first characters of a stored value at ``lookup`` (what the attacker confirms)."""
    values = model._default_manager.values_list(lookup, flat=True)
    value = next((str(v) for v in values if v), "")
    return value[:3] or "a"


def probe(client: Client, url: str, query: dict[str, str]) -> Any:
    response = client.get(url, query)
    assert response.status_code != 500, f"500 on {url}?{query}"
    return response


@pytest.mark.parametrize("who", ["support", "superuser"])
def test_secret_fields_answer_no_lookup(seeded, who, superuser, support_user):  # noqa: F811
    client = attacker(support_user if who == "support" else superuser)
    tried = 0
    for model, url in changelists():
        if client.get(url).status_code != 200:
            continue  # no view permission: nothing to filter
        for path, field in secret_paths(model):
            if isinstance(field, models.JSONField):
                target = f"{path}__link"  # a key inside the document, as in the outbox
                assert probe(client, url, {f"{path}__contains": "x"}).status_code == 400
            else:
                target = path
            right = prefix_of(model, target)
            hit = probe(client, url, {f"{target}__startswith": right})
            miss = probe(client, url, {f"{target}__startswith": "~~~"})
            assert hit.status_code == 400, f"{who}: {url}?{target}__startswith= {hit.status_code}"
            assert hit.content == miss.content
            for lookup in LOOKUPS[1:]:
                assert probe(client, url, {f"{target}__{lookup}": right}).status_code == 400
            tried += 1
    assert tried > (100 if who == "superuser" else 10)


def test_every_field_lookup_is_answered_without_a_500(seeded, superuser):  # noqa: F811
    # One lookup per field, the kinds taking turns, on every registered model's changelist.
    client = attacker(superuser)
    turn = 0
    for model, url in changelists():
        for field in model._meta.concrete_fields:
            lookup = LOOKUPS[turn % len(LOOKUPS)]
            turn += 1
            probe(client, url, {f"{field.name}__{lookup}": "a("})
    assert turn > 300


def test_the_known_probes_are_refused(seeded, superuser, support_user):  # noqa: F811
    support, root = attacker(support_user), attacker(superuser)
    invites = reverse("admin:members_invite_changelist")
    outbox = reverse("admin:ops_notification_changelist")
    members = reverse("admin:members_member_changelist")
    keys = reverse("admin:djstripe_apikey_changelist")
    endpoints = reverse("admin:djstripe_webhookendpoint_changelist")
    for client, url, query in [
        (support, invites, {"token__startswith": INVITE_TOKEN[:3]}),
        (support, outbox, {"context__link__startswith": MAGIC_LINK[:30]}),
        (support, outbox, {"context__contains": "link"}),
        (support, members, {"user__password__startswith": "pbk"}),
        (support, members, {"team__invites__token__startswith": INVITE_TOKEN[:3]}),
        (root, keys, {"secret__startswith": "sk_"}),
        (root, endpoints, {"secret__startswith": "whs"}),
        (root, outbox, {"context__link__startswith": MAGIC_LINK[:30]}),
        # A field named key (an OTP device's seed, here the outbox's own key) is refused too.
        (root, outbox, {"key__startswith": "magic"}),
    ]:
        assert probe(client, url, query).status_code == 400, (url, query)


def test_ordinary_filters_still_work(seeded, support_user):  # noqa: F811
    client = attacker(support_user)
    response = client.get(reverse("admin:members_invite_changelist"), {"tier__exact": "team"})
    assert response.status_code == 200
    assert "g@x.org" in response.content.decode()


def test_outbox_shows_support_no_link_and_nobody_a_login_link(seeded, superuser, support_user):  # noqa: F811
    magic = Notification.objects.get(kind="magic_link")
    invite = Notification.objects.get(kind="seat_invite")
    for user in (support_user, superuser):
        page = attacker(user).get(reverse("admin:ops_notification_change", args=[magic.pk]))
        assert page.status_code == 200
        assert "Mq9magic" not in page.content.decode()
    support_page = attacker(support_user).get(
        reverse("admin:ops_notification_change", args=[invite.pk])
    )
    assert support_page.status_code == 200
    html = support_page.content.decode()
    assert INVITE_TOKEN not in html and INVITE_TOKEN[:8] not in html
    assert "Camelot Ltd" in html  # the rest of the context is still there


def test_stripe_keys_and_endpoint_secrets_are_masked_for_superusers(seeded, superuser):  # noqa: F811
    client = attacker(superuser)
    key = APIKey.objects.get(secret=API_KEY)
    endpoint = WebhookEndpoint.objects.get(id="we_probe")
    pages = [
        reverse("admin:djstripe_apikey_changelist"),
        reverse("admin:djstripe_apikey_change", args=[key.pk]),
        reverse("admin:djstripe_webhookendpoint_changelist"),
        reverse("admin:djstripe_webhookendpoint_change", args=[endpoint.pk]),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert API_KEY not in html and "K" * 24 not in html, url
        assert ENDPOINT_SECRET not in html and "W" * 24 not in html, url
    # Enough to tell keys apart.
    assert "tail" in client.get(pages[1]).content.decode()


def test_every_registered_admin_carries_the_guard():
    # New admins (ours or a library's) inherit the refusal without anyone remembering it.
    unguarded = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if not isinstance(model_admin, GuardedAdminMixin)
    ]
    assert unguarded == []
