"""Fifty simultaneous deliveries of one event are stored once and applied once (PostgreSQL)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from billing.models import StripeEventInbox
from ops.models import AuditLog, Notification
from tests import personas
from tests.providers import (
    pay_checkout,
    recorded_events,
    start_individual_checkout,
    stripe_signature,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _needs_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("concurrency test needs PostgreSQL: set DATABASE_URL=postgres://…")


def test_fifty_concurrent_deliveries_apply_once(stripe_server, live_server):
    member = personas.buyer("lin@example.org")
    session = start_individual_checkout(member)
    pay_checkout(stripe_server, session.id, email="lin@example.org")
    completed = recorded_events(stripe_server, ("checkout.session.completed",))[0]
    body = json.dumps(completed)

    def post(_: int) -> requests.Response:
        return requests.post(
            f"{live_server.url}/stripe/webhook/",
            data=body.encode(),
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": stripe_signature(body),
            },
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(post, range(50)))

    assert [r.status_code for r in responses] == [200] * 50
    assert sum(1 for r in responses if not r.json().get("duplicate")) == 1
    row = StripeEventInbox.objects.get(event_id=completed["id"])
    assert (row.status, row.attempts) == (StripeEventInbox.Status.PROCESSED, 1)
    assert Notification.objects.filter(member=member, kind="welcome").count() == 1
    assert (
        AuditLog.objects.filter(action="subscription_activated", target_id=str(member.pk)).count()
        == 1
    )
