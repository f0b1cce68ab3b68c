"""Bad input never crashes a page and never stores anything.

Hypothesis drives each public entry point with random input; every case checks the answer is
not a 500 and that invalid input left the User, Member, StripeEventInbox, Notification and
AuditLog tables as they were. The tally lands in docs/RELIABILITY.md ("Bad input").
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import StripeEventInbox
from fakes.stripe.webhooks import sign_payload
from members.models import Invite, SeatTier
from tests.security import fuzzing

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

text = st.text(max_size=300)
# Printable-ish junk plus the characters that break parsers and databases.
nasty = st.one_of(
    text,
    st.sampled_from(
        [
            "",
            "\x00",
            "%00",
            "'; DROP TABLE members_user; --",
            "<script>",
            "../../etc/passwd",
            "é" * 50,
            "a" * 5000,
            "null",
            "[]",
            "{}",
            "\u202e",
            "\ud7ff",
        ]
    ),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200)


def _post_webhook(body: bytes | str, headers: dict[str, str]) -> Any:
    client = fuzzing.client()
    return client.post(
        "/stripe/webhook/", data=body, content_type="application/json", headers=headers
    )


# --- Stripe webhook -----------------------------------------------------------------------


@FUZZ
@given(body=st.binary(max_size=2000), signature=st.one_of(st.none(), header_values))
def test_webhook_random_bodies_and_signatures_are_refused(db, body, signature):
    before = fuzzing.snapshot()
    headers = {} if signature is None else {"Stripe-Signature": signature}
    response = fuzzing.send(
        "POST /stripe/webhook/ (random body and signature)", lambda: _post_webhook(body, headers)
    )
    assert response.status_code == 400
    fuzzing.assert_nothing_stored("POST /stripe/webhook/ (random body and signature)", before)


@FUZZ
@given(
    payload=json_values,
    age=st.one_of(st.just(0), st.integers(min_value=301, max_value=10**6)),
    secret=st.sampled_from(["right", "wrong"]),
)
def test_webhook_wrong_secret_or_stale_signature_stores_nothing(db, payload, age, secret):
    """Any JSON signed with another secret, or signed more than five minutes ago, is a 400."""
    body = json.dumps(payload)
    key = django_settings.STRIPE_WEBHOOK_SECRET if secret == "right" else "whsec_attacker"
    if secret == "right" and age == 0:
        age = 400
    signature = sign_payload(body, key, int(time.time()) - age)
    before = fuzzing.snapshot()
    endpoint = "POST /stripe/webhook/ (wrong secret or stale signature)"
    response = fuzzing.send(endpoint, lambda: _post_webhook(body, {"Stripe-Signature": signature}))
    assert response.status_code == 400
    fuzzing.assert_nothing_stored(endpoint, before)


@FUZZ
@given(payload=json_values)
def test_webhook_validly_signed_random_json(db, queued_processing, payload):
    """Signed JSON that is not an event (no id or no type) is a 400 and stores nothing."""
    body = json.dumps(payload)
    is_event = isinstance(payload, dict) and bool(payload.get("id")) and bool(payload.get("type"))
    before = fuzzing.snapshot()
    endpoint = "POST /stripe/webhook/ (signed random JSON)"
    response = fuzzing.send(
        endpoint,
        lambda: _post_webhook(
            body, {"Stripe-Signature": sign_payload(body, django_settings.STRIPE_WEBHOOK_SECRET)}
        ),
    )
    if is_event:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        fuzzing.assert_nothing_stored(endpoint, before)


event_ids = st.text(min_size=1, max_size=300).filter(lambda s: s.strip())


@FUZZ
@given(
    event_id=st.one_of(event_ids, st.integers(min_value=1)),
    event_type=st.one_of(
        st.text(min_size=1, max_size=80),
        st.sampled_from(
            [
                "invoice.payment_failed",
                "customer.subscription.deleted",
                "checkout.session.completed",
            ]
        ),
    ),
    data=json_values,
    livemode=json_values,
    extra=st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)
def test_webhook_validly_signed_event_shapes_are_stored_once(
    db, queued_processing, event_id, event_type, data, livemode, extra
):
    """A signed event of any shape is acknowledged and stored exactly once (a redelivery is
    a no-op); nothing about its data can crash the acknowledgement."""
    event = {**extra, "id": event_id, "type": event_type, "data": data, "livemode": livemode}
    body = json.dumps(event)
    endpoint = "POST /stripe/webhook/ (signed event shapes)"
    # Examples share one test transaction: forget an id an earlier example stored.
    # (Stored the way the endpoint stores it: at most 255 characters, NUL bytes dropped.)
    StripeEventInbox.objects.filter(event_id=str(event_id).replace("\x00", "")[:255]).delete()
    before = StripeEventInbox.objects.count()
    for _ in range(2):
        signature = sign_payload(body, django_settings.STRIPE_WEBHOOK_SECRET)
        response = fuzzing.send(
            endpoint, lambda: _post_webhook(body, {"Stripe-Signature": signature})
        )
        assert response.status_code == 200
    assert StripeEventInbox.objects.count() == before + 1


# --- Sign-up, login, magic link ---------------------------------------------------------


form_values = st.one_of(nasty, st.emails())


@FUZZ
@given(email=form_values, password=nasty, confirm=nasty, next_=nasty)
def test_signup_with_bad_input(db, email, password, confirm, next_):
    cache.clear()  # rate-limit counters: every case reaches the form
    before = fuzzing.snapshot()
    response = fuzzing.send(
        "POST /signup/",
        lambda: fuzzing.client().post(
            "/signup/",
            {"email": email, "password": password, "password_confirm": confirm, "next": next_},
        ),
    )
    if response.status_code == 302:
        # A valid sign-up: one account, and never a redirect off the site.
        assert fuzzing.snapshot()["User"] == before["User"] + 1
        assert response["Location"].startswith("/")
        assert not response["Location"].startswith("//")
    else:
        assert response.status_code == 400
        fuzzing.assert_nothing_stored("POST /signup/", before)


@FUZZ
@given(email=form_values, password=nasty, next_=nasty)
def test_login_with_bad_input(db, email, password, next_):
    cache.clear()
    before = fuzzing.snapshot()
    response = fuzzing.send(
        "POST /login/",
        lambda: fuzzing.client().post(
            "/login/", {"email": email, "password": password, "next": next_}
        ),
    )
    assert response.status_code == 400
    fuzzing.assert_nothing_stored("POST /login/", before)


@FUZZ
@given(email=form_values, method=st.sampled_from(["get", "post"]))
def test_magic_link_request_with_unknown_or_bad_addresses(db, email, method):
    cache.clear()
    before = fuzzing.snapshot()
    client = fuzzing.client()
    response = fuzzing.send(
        f"{method.upper()} /login/link/",
        lambda: getattr(client, method)("/login/link/", {"email": email}),
    )
    assert response.status_code in (200, 400)
    fuzzing.assert_nothing_stored(f"{method.upper()} /login/link/", before)


@FUZZ
@given(token=nasty, method=st.sampled_from(["get", "post"]))
def test_magic_link_verify_with_random_tokens(db, percival, token, method):
    before = fuzzing.snapshot()
    client = fuzzing.client()
    endpoint = f"{method.upper()} /login/link/verify/"
    response = fuzzing.send(
        endpoint, lambda: getattr(client, method)("/login/link/verify/", {"token": token})
    )
    assert response.status_code in (200, 400)
    assert "_auth_user_id" not in client.session
    fuzzing.assert_nothing_stored(endpoint, before)


# --- Discord OAuth callback ---------------------------------------------------------------


oauth_params = st.dictionaries(
    st.sampled_from(["code", "state", "error", "error_description", "guild_id", "next"]),
    nasty,
    max_size=5,
)


@FUZZ
@given(params=oauth_params)
def test_oauth_callback_without_a_started_flow(db, discord, params):
    before = fuzzing.snapshot()
    client = fuzzing.client()
    response = fuzzing.send(
        "GET /oauth/discord/callback/ (no flow)",
        lambda: client.get("/oauth/discord/callback/", params),
    )
    assert response.status_code == 400
    assert "_auth_user_id" not in client.session
    fuzzing.assert_nothing_stored("GET /oauth/discord/callback/ (no flow)", before)


@FUZZ
@given(
    flow=st.sampled_from(["login", "link"]),
    params=oauth_params,
    real_state=st.booleans(),
)
def test_oauth_callback_with_a_started_flow_and_random_answers(
    db, discord, percival, flow, params, real_state
):
    """A started flow with a forged state, a random code (the fake Discord rejects it) or an
    error is refused: nobody is logged in or linked, nothing is stored."""
    client = fuzzing.client()
    if flow == "link":
        client.force_login(percival.user)
        started = client.post("/claim/")
    else:
        started = client.get("/login/discord/")
    assert started.status_code == 302
    if real_state:
        state = started["Location"].split("state=")[1].split("&")[0]
        params = {**params, "state": state}
    user_before = client.session.get("_auth_user_id")
    before = fuzzing.snapshot()
    endpoint = f"GET /oauth/discord/callback/ ({flow} flow started)"
    response = fuzzing.send(endpoint, lambda: client.get("/oauth/discord/callback/", params))
    assert response.status_code == 400
    assert client.session.get("_auth_user_id") == user_before
    percival.refresh_from_db()
    assert percival.discord_id in (None, "")
    fuzzing.assert_nothing_stored(endpoint, before)


# --- Invite claim ---------------------------------------------------------------------------


@pytest.fixture
def camelot_invite(camelot):
    """A real, usable invite exists, so a random token is refused for being wrong."""
    return Invite.objects.create(
        team=camelot,
        tier=SeatTier.TEAM,
        token=secrets.token_urlsafe(32),
        created_by=camelot.primary_owner,
    )


@FUZZ
@given(token=nasty, method=st.sampled_from(["get", "post"]), data=oauth_params)
def test_invite_with_random_tokens(db, camelot_invite, token, method, data):
    cache.clear()
    before = fuzzing.snapshot()
    client = fuzzing.client()
    path = f"/invite/{quote(token, safe='')}/"
    endpoint = f"{method.upper()} /invite/<token>/"
    response = fuzzing.send(endpoint, lambda: getattr(client, method)(path, data))
    assert response.status_code == 404
    assert "discord_oauth" not in client.session
    fuzzing.assert_nothing_stored(endpoint, before)
