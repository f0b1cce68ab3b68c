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


def test_concurrent_drains_claim_disjoint_batches_and_apply_each_event_once(stripe_server):
    """Two workers draining one renewal burst at once: no row is claimed by both, and every
    event ends processed after one attempt."""
    from django.db import connections
    from django.utils import timezone

    from billing.drain import claim_batch, drain_stripe_events, release
    from billing.webhooks import inbox_insert

    sub_ids = stripe_server.state.seed(30, price="price_individual")
    with stripe_server.state.lock:
        before = len(stripe_server.state.events.order)
    for sub_id in sub_ids:
        stripe_server.state.renew(sub_id)
    with stripe_server.state.lock:
        events = [
            stripe_server.state.events.get(i) for i in stripe_server.state.events.order[before:]
        ]
    for event in events:
        inbox_insert(event=event, body=json.dumps(event), status=StripeEventInbox.Status.PENDING)

    def claim(run: str) -> set[str]:
        try:
            return {row.event_id for row in claim_batch(now=timezone.now(), run=run, limit=200)}
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(claim, ["one", "two"])
    assert not first & second
    assert len(first | second) == len(events)
    release("one"), release("two")

    def drain(_: int) -> int:
        try:
            return drain_stripe_events()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        applied = sum(pool.map(drain, range(2)))
    assert applied == len(events)
    rows = StripeEventInbox.objects.filter(event_id__in=[e["id"] for e in events])
    assert {(row.status, row.attempts) for row in rows} == {(StripeEventInbox.Status.PROCESSED, 1)}
