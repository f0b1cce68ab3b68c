"""The drain applies events by Stripe object: one read settles a subscription's events.

Renewal day sends five events per subscription (the subscription updated; its invoice created,
finalized, paid, payment succeeded), shuffled and some twice. The drain reads each subscription
once, with its latest invoice, applies the result once and marks every event processed; an
event created before a read that was applied is settled by it without another call; purchases
and staff replays go first. The fake Stripe runs over HTTP and counts the calls.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from djstripe.models import Invoice, Subscription

from billing.drain import claim_batch, release
from billing.entitlement import member_is_entitled
from billing.models import FailureEpisode, StripeEventInbox, StripeObjectRead
from billing.tasks import drain_stripe_events
from tests import personas
from tests.providers import (
    deliver,
    pay_checkout,
    recorded_events,
    start_individual_checkout,
    worker_busy,
)

pytestmark = pytest.mark.django_db

Status = StripeEventInbox.Status
Lane = StripeEventInbox.Lane


@pytest.fixture
def clock():
    """The process's clock (the fake Stripe's threads share it), moved by hand: renewals come
    long after a purchase, and a read settles events only of earlier seconds."""
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        yield traveller


def _subscribed(client, stripe_server, email: str):
    """A member whose purchase the gateway has applied; returns (member, subscription id)."""
    member = personas.buyer(email)
    session = start_individual_checkout(member)
    seen = {event["id"] for event in recorded_events(stripe_server)}
    pay_checkout(stripe_server, session.id, email=email)
    for event in recorded_events(stripe_server):
        if event["id"] not in seen:
            assert deliver(client, event).status_code == 200
    member.refresh_from_db()
    assert member_is_entitled(member)
    return member, member.subscription_id


def _new_events(stripe_server, operation) -> list[dict]:
    seen = {event["id"] for event in recorded_events(stripe_server)}
    operation()
    return [event for event in recorded_events(stripe_server) if event["id"] not in seen]


def _reads(stripe_server, sub_id: str) -> int:
    return sum(
        1 for r in stripe_server.requests(f"/v1/subscriptions/{sub_id}") if r["method"] == "GET"
    )


def _rows(events: list[dict]) -> list[StripeEventInbox]:
    return list(StripeEventInbox.objects.filter(event_id__in=[e["id"] for e in events]))


def test_a_renewals_events_shuffled_and_duplicated_cost_one_read(client, stripe_server, clock):
    member, sub_id = _subscribed(client, stripe_server, "ada@example.org")
    clock.shift(timedelta(hours=1))
    renewal = _new_events(stripe_server, lambda: stripe_server.state.renew(sub_id))
    assert len(renewal) == 5
    deliveries = renewal + renewal[:2]
    random.Random(7).shuffle(deliveries)

    with worker_busy():
        for event in deliveries:
            assert deliver(client, event).status_code == 200
    stripe_server.clear_requests()
    drain_stripe_events()

    assert _reads(stripe_server, sub_id) == 1
    assert stripe_server.requests("/v1/invoices") == []
    rows = _rows(renewal)
    assert len(rows) == 5
    assert {(row.status, row.attempts) for row in rows} == {(Status.PROCESSED, 1)}
    # The one read was mirrored and applied: the new period and its paid invoice are known.
    stripe_sub = stripe_server.state.get_subscription(sub_id)
    assert (
        Subscription.objects.get(id=sub_id).stripe_data["latest_invoice"]
        == (stripe_sub["latest_invoice"])
    )
    assert Invoice.objects.get(id=stripe_sub["latest_invoice"]).status == "paid"
    member.refresh_from_db()
    assert member_is_entitled(member)


def test_events_created_before_an_applied_read_are_settled_without_another_call(
    client, stripe_server, clock
):
    _, sub_id = _subscribed(client, stripe_server, "ada@example.org")
    clock.shift(timedelta(hours=1))
    renewal = _new_events(stripe_server, lambda: stripe_server.state.renew(sub_id))
    first, *later = renewal

    clock.shift(timedelta(seconds=3))
    stripe_server.clear_requests()
    deliver(client, first)
    assert _reads(stripe_server, sub_id) == 1
    for event in later:
        deliver(client, event)

    assert _reads(stripe_server, sub_id) == 1
    assert stripe_server.requests("/v1/invoices") == []
    assert {row.status for row in _rows(renewal)} == {Status.PROCESSED}
    read = StripeObjectRead.objects.get(subject=f"subscription:{sub_id}")
    assert read.invoice_ids == [stripe_server.state.get_subscription(sub_id)["latest_invoice"]]


def test_an_event_about_an_invoice_the_read_did_not_see_is_read_again(client, stripe_server, clock):
    """The purchase's first invoice, replayed after a renewal: the last read mirrored only the
    renewal's invoice, so this one is looked at afresh."""
    _, sub_id = _subscribed(client, stripe_server, "ada@example.org")
    first_invoice_finalized = next(
        e
        for e in recorded_events(stripe_server, ("invoice.finalized",))
        if e["data"]["object"]["billing_reason"] == "subscription_create"
    )
    clock.shift(timedelta(hours=1))
    renewal = _new_events(stripe_server, lambda: stripe_server.state.renew(sub_id))
    clock.shift(timedelta(seconds=3))
    for event in renewal:
        deliver(client, event)
    StripeEventInbox.objects.filter(event_id=first_invoice_finalized["id"]).delete()
    clock.shift(timedelta(seconds=3))
    stripe_server.clear_requests()
    deliver(client, first_invoice_finalized)

    assert _reads(stripe_server, sub_id) == 1
    assert (
        len(
            stripe_server.requests(
                f"/v1/invoices/{first_invoice_finalized['data']['object']['id']}"
            )
        )
        == 1
    )
    assert _rows([first_invoice_finalized])[0].status == Status.PROCESSED


def test_a_failed_read_fails_every_event_of_the_subscription_and_they_retry_together(
    client, stripe_server, clock
):
    member, sub_id = _subscribed(client, stripe_server, "ada@example.org")
    renewal = _new_events(stripe_server, lambda: stripe_server.state.fail_renewal(sub_id))
    stripe_server.add_fault(f"/v1/subscriptions/{sub_id}", status=500, count=1000)

    with worker_busy():
        for event in renewal:
            deliver(client, event)
    drain_stripe_events()

    rows = _rows(renewal)
    assert {(row.status, row.attempts) for row in rows} == {(Status.RETRYING, 1)}
    assert all("500" in row.last_error or "APIError" in row.last_error for row in rows)
    assert not FailureEpisode.objects.filter(subscription_id=sub_id).exists()

    stripe_server.state.faults.clear()
    clock.move_to(max(row.next_attempt_at for row in rows) + timedelta(seconds=1))
    drain_stripe_events()

    assert {(row.status, row.attempts) for row in _rows(renewal)} == {(Status.PROCESSED, 2)}
    episode = FailureEpisode.objects.get(subscription_id=sub_id)
    assert episode.is_open
    member.refresh_from_db()
    assert member_is_entitled(member)  # in grace


def test_purchases_are_applied_before_the_renewals_waiting_ahead_of_them(client, stripe_server):
    _, sub_id = _subscribed(client, stripe_server, "ada@example.org")
    renewal = _new_events(stripe_server, lambda: stripe_server.state.renew(sub_id))
    buyer = personas.buyer("bob@example.org")
    session = start_individual_checkout(buyer)
    purchase = _new_events(
        stripe_server, lambda: pay_checkout(stripe_server, session.id, email="bob@example.org")
    )

    with worker_busy():
        for event in renewal + purchase:  # the renewals arrived first
            deliver(client, event)
    drain_stripe_events()

    people = {row.type for row in _rows(purchase) if row.lane == Lane.PEOPLE}
    assert {"checkout.session.completed", "customer.subscription.created", "invoice.paid"} <= people
    assert {row.lane for row in _rows(renewal)} == {Lane.BULK}
    last_person = max(row.processed_at for row in _rows(purchase) if row.lane == Lane.PEOPLE)
    first_renewal = min(row.processed_at for row in _rows(renewal))
    assert last_person <= first_renewal
    buyer.refresh_from_db()
    assert member_is_entitled(buyer)


def test_rows_a_stopped_drain_claimed_go_back_to_the_queue_unchanged(client, stripe_server):
    _, sub_id = _subscribed(client, stripe_server, "ada@example.org")
    renewal = _new_events(stripe_server, lambda: stripe_server.state.renew(sub_id))
    with worker_busy():
        for event in renewal:
            deliver(client, event)

    claimed = claim_batch(now=timezone.now(), run="stopped", limit=50)
    assert {row.event_id for row in claimed} == {e["id"] for e in renewal}
    assert claim_batch(now=timezone.now(), run="another", limit=50) == []
    assert release("stopped") == 5

    assert {(row.status, row.attempts, row.claimed_by) for row in _rows(renewal)} == {
        (Status.PENDING, 0, "")
    }
    assert drain_stripe_events() == 5


def test_staff_reprocessing_goes_in_the_people_lane(admin_client, client, stripe_server):
    _, sub_id = _subscribed(client, stripe_server, "ada@example.org")
    renewal = _new_events(stripe_server, lambda: stripe_server.state.renew(sub_id))
    for event in renewal:
        deliver(client, event)
    row = _rows(renewal)[0]
    assert row.lane == Lane.BULK

    with worker_busy():
        admin_client.post(
            "/admin/billing/stripeeventinbox/",
            {"action": "reprocess", "_selected_action": [row.pk]},
        )
        row.refresh_from_db()
        assert (row.status, row.lane) == (Status.PENDING, Lane.PEOPLE)
    drain_stripe_events()
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.PROCESSED, 2)


def test_at_most_one_drain_waits_in_the_queue(client, stripe_server):
    """A burst's deliveries queue one drain, not one per delivery: more would stand in front of
    other work (a new member's role) doing nothing."""
    from django_q.brokers import get_broker

    from billing.webhooks import drain_request, drain_started

    broker = get_broker()
    with worker_busy():
        broker.purge_queue()
        for _ in range(5):
            drain_request()
        assert broker.queue_size() == 1
        drain_started()  # a worker took it: the next delivery may queue the next one
        drain_request()
        drain_request()
        assert broker.queue_size() == 2
