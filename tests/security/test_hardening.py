"""Regression tests for the crashes the fuzz suite found (each was a 500 on bad input)."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from billing.models import StripeEventInbox
from fakes.stripe.webhooks import sign_payload
from tests.security import fuzzing

pytestmark = pytest.mark.django_db


def test_signed_event_whose_data_is_not_an_object_is_stored_not_crashed(queued_processing):
    body = json.dumps({"id": "evt_odd_shape", "type": "invoice.paid", "data": 7})
    response = fuzzing.client().post(
        "/stripe/webhook/",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, settings.STRIPE_WEBHOOK_SECRET)},
    )
    assert response.status_code == 200
    row = StripeEventInbox.objects.get(event_id="evt_odd_shape")
    assert row.object_id == ""


def test_non_ascii_oauth_state_is_refused_not_crashed(discord):
    client = fuzzing.client()
    assert client.get("/login/discord/").status_code == 302
    response = client.get("/oauth/discord/callback/", {"code": "x", "state": "ünïcode"})
    assert response.status_code == 400
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("target", ["dashboard", "billing:dashboard", "b\u00fc<x", "javascript:1"])
def test_login_next_that_is_not_a_site_path_falls_back_to_the_dashboard(target):
    from members.models import Member, User

    user = User.objects.create_user("gawain@example.org", "correct horse battery")
    Member.objects.create(user=user)
    response = fuzzing.client().post(
        "/login/",
        {"email": "gawain@example.org", "password": "correct horse battery", "next": target},
    )
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_signed_event_with_nul_bytes_in_its_ids_is_stored_not_crashed(queued_processing):
    # PostgreSQL text cannot hold NUL: found by the fuzz suite on PostgreSQL.
    body = json.dumps({"id": "evt_\x00nul", "type": "invoice.\x00paid", "data": {"object": {}}})
    response = fuzzing.client().post(
        "/stripe/webhook/",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, settings.STRIPE_WEBHOOK_SECRET)},
    )
    assert response.status_code == 200
    row = StripeEventInbox.objects.get(event_id="evt_nul")
    assert row.type == "invoice.paid"


@pytest.mark.parametrize("token", ["abc\x00def", "../../etc", "a" * 65, "tok en"])
def test_malformed_invite_token_is_not_found_not_crashed(token):
    response = fuzzing.client().get(f"/invite/{token}/")
    assert response.status_code == 404
