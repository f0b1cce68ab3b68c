"""Stripe's signature is checked on the raw body; anything unverified leaves no trace."""

from __future__ import annotations

import json
import time

import pytest
from djstripe.models import Event, WebhookEventTrigger

from billing.models import StripeEventInbox
from tests.providers import post_webhook, stripe_signature

pytestmark = pytest.mark.django_db


def _nothing_stored() -> bool:
    return (
        not StripeEventInbox.objects.exists()
        and not WebhookEventTrigger.objects.exists()
        and not Event.objects.exists()
    )


def test_missing_signature_is_rejected_and_nothing_stored(client, stripe_event):
    response = post_webhook(client, json.dumps(stripe_event), signature=None)

    assert response.status_code == 400
    assert response.json() == {"error": "missing Stripe-Signature header"}
    assert _nothing_stored()


def test_signature_made_with_another_secret_is_rejected(client, stripe_event):
    body = json.dumps(stripe_event)

    response = post_webhook(client, body, stripe_signature(body, secret="whsec_forged"))

    assert response.status_code == 400
    assert response.json() == {"error": "invalid signature"}
    assert _nothing_stored()


def test_body_changed_after_signing_is_rejected(client, stripe_event):
    signature = stripe_signature(json.dumps(stripe_event))
    stripe_event["type"] = "customer.subscription.deleted"

    response = post_webhook(client, json.dumps(stripe_event), signature)

    assert response.status_code == 400
    assert _nothing_stored()


def test_signature_older_than_five_minutes_is_rejected(client, stripe_event):
    body = json.dumps(stripe_event)
    stale = stripe_signature(body, timestamp=int(time.time()) - 301)

    response = post_webhook(client, body, stale)

    assert response.status_code == 400
    assert _nothing_stored()


def test_garbage_signature_header_is_rejected(client, stripe_event):
    response = post_webhook(client, json.dumps(stripe_event), "not-a-signature")

    assert response.status_code == 400
    assert _nothing_stored()


def test_validly_signed_malformed_json_is_rejected(client):
    body = '{"id": "evt_1", "type": '

    response = post_webhook(client, body, stripe_signature(body))

    assert response.status_code == 400
    assert response.json() == {"error": "malformed JSON"}
    assert _nothing_stored()


def test_validly_signed_json_that_is_not_an_event_is_rejected(client):
    body = json.dumps(["evt_1"])

    response = post_webhook(client, body, stripe_signature(body))

    assert response.status_code == 400
    assert _nothing_stored()


def test_get_is_not_allowed(client):
    assert client.get("/stripe/webhook/").status_code == 405
    assert _nothing_stored()


@pytest.mark.usefixtures("queued_processing")
def test_valid_delivery_is_stored_once_with_one_insert(
    client, stripe_event, django_assert_max_num_queries
):
    body = json.dumps(stripe_event)

    with django_assert_max_num_queries(2) as captured:
        response = post_webhook(client, body, stripe_signature(body))

    assert response.status_code == 200
    assert response.json() == {"received": True}
    inserts = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("INSERT")]
    ours = [sql for sql in inserts if StripeEventInbox._meta.db_table in sql]
    assert len(ours) == 1
    row = StripeEventInbox.objects.get()
    assert (row.event_id, row.type, row.status) == (
        "evt_test_webhook_0001",
        "customer.subscription.updated",
        StripeEventInbox.Status.PENDING,
    )
    assert row.object_id == "sub_test_0001"
    assert row.body == body


@pytest.mark.usefixtures("queued_processing")
def test_duplicate_delivery_is_stored_once_and_acknowledged(client, stripe_event):
    body = json.dumps(stripe_event)
    first = post_webhook(client, body, stripe_signature(body))
    again = post_webhook(client, body, stripe_signature(body, timestamp=int(time.time()) + 1))

    assert first.status_code == again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    assert StripeEventInbox.objects.count() == 1


def test_event_from_the_other_mode_is_stored_and_ignored(client, stripe_event, settings):
    stripe_event["livemode"] = True
    body = json.dumps(stripe_event)

    response = post_webhook(client, body, stripe_signature(body))

    assert response.status_code == 200
    row = StripeEventInbox.objects.get()
    assert row.status == StripeEventInbox.Status.IGNORED
    assert row.attempts == 0 and row.next_attempt_at is None
    assert not Event.objects.exists()
