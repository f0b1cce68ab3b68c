"""Stored events are applied against Stripe's current state: once, in any order, with retries.

The fake Stripe runs over HTTP; its recorded events are delivered to the gateway's webhook
with the test client, which lets each test choose order, duplicates and timing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import stripe
from django.core.management import call_command
from django.utils import timezone
from djstripe.models import Subscription

from billing.entitlement import member_is_entitled
from billing.models import StripeEventInbox
from billing.selectors import member_billing_summary
from billing.tasks import drain_stripe_events
from ops.models import AuditLog, Notification
from tests import personas
from tests.providers import deliver, pay_checkout, recorded_events, start_individual_checkout

pytestmark = pytest.mark.django_db

Status = StripeEventInbox.Status


def _welcomes(member) -> int:
    return Notification.objects.filter(member=member, kind="welcome").count()


@pytest.fixture
def paid_individual(stripe_server):
    """An individual who has paid on Checkout; the fake has recorded (not sent) the events."""
    member = personas.buyer("ada@example.org")
    session = start_individual_checkout(member)
    pay_checkout(stripe_server, session.id, email="ada@example.org")
    return member


def test_checkout_events_activate_the_member_and_welcome_them_once(
    client, stripe_server, paid_individual
):
    for event in recorded_events(stripe_server):
        assert deliver(client, event).status_code == 200

    paid_individual.refresh_from_db()
    assert paid_individual.subscription_id.startswith("sub_")
    assert paid_individual.paid_at is not None and paid_individual.cancelled_at is None
    assert member_is_entitled(paid_individual)
    summary = member_billing_summary(paid_individual)
    assert summary.status == "active" and summary.period_end is not None
    assert _welcomes(paid_individual) == 1
    assert set(StripeEventInbox.objects.values_list("status", flat=True)) == {Status.PROCESSED}
    assert AuditLog.objects.filter(
        actor_type="stripe", action="subscription_activated", target_id=str(paid_individual.pk)
    ).exists()


def test_duplicate_deliveries_are_applied_once(client, stripe_server, paid_individual):
    for event in recorded_events(stripe_server):
        deliver(client, event)
        again = deliver(client, event)
        assert again.json() == {"received": True, "duplicate": True}

    assert _welcomes(paid_individual) == 1
    assert (
        AuditLog.objects.filter(
            action="subscription_activated", target_id=str(paid_individual.pk)
        ).count()
        == 1
    )
    assert StripeEventInbox.objects.count() == len(recorded_events(stripe_server))


def test_checkout_batch_in_reverse_order_converges(client, stripe_server, paid_individual):
    for event in reversed(recorded_events(stripe_server)):
        deliver(client, event)

    paid_individual.refresh_from_db()
    assert member_is_entitled(paid_individual)
    assert _welcomes(paid_individual) == 1


def test_cancellation_seen_before_the_older_events_wins(client, stripe_server, paid_individual):
    """``subscription.deleted`` arrives first; the stale ``created``/``updated`` never revive."""
    subscription_id = recorded_events(stripe_server, ("customer.subscription.created",))[0]["data"][
        "object"
    ]["id"]
    stripe.Subscription.cancel(subscription_id)

    for event in reversed(recorded_events(stripe_server)):
        deliver(client, event)

    paid_individual.refresh_from_db()
    assert paid_individual.subscription_id == subscription_id
    assert not member_is_entitled(paid_individual)
    assert Subscription.objects.get(id=subscription_id).stripe_data["status"] == "canceled"
    assert _welcomes(paid_individual) == 0


def test_cancellation_ends_access_with_a_farewell(client, stripe_server, paid_individual):
    paid_individual.discord_id = "700000000000000001"
    paid_individual.introduced_at = timezone.now()
    paid_individual.save()
    for event in recorded_events(stripe_server):
        deliver(client, event)
    paid_individual.refresh_from_db()
    stripe.Subscription.cancel(paid_individual.subscription_id)

    for event in recorded_events(stripe_server, ("customer.subscription.deleted",)):
        deliver(client, event)

    paid_individual.refresh_from_db()
    assert paid_individual.cancelled_at is not None
    assert paid_individual.introduced_at is None  # must introduce again on return
    assert not member_is_entitled(paid_individual)
    farewell = Notification.objects.get(member=paid_individual, kind="farewell")
    assert (farewell.channel, farewell.recipient) == ("dm", "700000000000000001")
    assert AuditLog.objects.filter(
        actor_type="stripe", action="subscription_ended", target_id=str(paid_individual.pk)
    ).exists()


def test_stripe_unreachable_keeps_the_error_and_retries_later(
    client, stripe_server, paid_individual
):
    stripe_server.add_fault("/v1/subscriptions", status=500, count=1000)
    completed = recorded_events(stripe_server, ("checkout.session.completed",))[0]

    assert deliver(client, completed).status_code == 200

    row = StripeEventInbox.objects.get(event_id=completed["id"])
    assert row.status == Status.RETRYING and row.processed_at is None
    assert "APIError" in row.last_error and "Traceback" in row.traceback
    assert row.next_attempt_at > timezone.now()
    paid_individual.refresh_from_db()
    assert not paid_individual.subscription_id and _welcomes(paid_individual) == 0

    # Not due yet: the worker's next drain leaves it alone.
    assert drain_stripe_events() == 0
    # Stripe is back and the backoff has passed.
    stripe_server.state.faults.clear()
    StripeEventInbox.objects.filter(pk=row.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert drain_stripe_events() == 1

    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == (Status.PROCESSED, 2, "")
    paid_individual.refresh_from_db()
    assert member_is_entitled(paid_individual) and _welcomes(paid_individual) == 1


def test_a_failing_event_does_not_block_the_others(client, stripe_server, paid_individual):
    events = recorded_events(stripe_server)
    stripe_server.add_fault("/v1/subscriptions", status=500, count=1000)
    completed = next(e for e in events if e["type"] == "checkout.session.completed")
    deliver(client, completed)
    stripe_server.state.faults.clear()

    others = [e for e in events if e["type"] == "customer.created"]
    for event in others:
        deliver(client, event)

    assert StripeEventInbox.objects.get(event_id=completed["id"]).status == Status.RETRYING
    assert {
        r.status for r in StripeEventInbox.objects.filter(event_id__in=[e["id"] for e in others])
    } == {Status.PROCESSED}


def test_retries_are_bounded(client, stripe_server, paid_individual):
    stripe_server.add_fault("/v1/subscriptions", status=500, count=10_000)
    completed = recorded_events(stripe_server, ("checkout.session.completed",))[0]
    deliver(client, completed)
    row = StripeEventInbox.objects.get(event_id=completed["id"])

    for _ in range(10):
        StripeEventInbox.objects.filter(pk=row.pk, next_attempt_at__isnull=False).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        drain_stripe_events()

    row.refresh_from_db()
    assert row.status == Status.FAILED and row.next_attempt_at is None
    assert row.attempts == 6


def test_replay_command_reapplies_failed_events(client, stripe_server, paid_individual):
    stripe_server.add_fault("/v1/subscriptions", status=500, count=1000)
    completed = recorded_events(stripe_server, ("checkout.session.completed",))[0]
    deliver(client, completed)
    stripe_server.state.faults.clear()

    call_command("replay_stripe_events", "--failed")

    assert StripeEventInbox.objects.get(event_id=completed["id"]).status == Status.PROCESSED
    paid_individual.refresh_from_db()
    assert member_is_entitled(paid_individual)


def test_replay_by_id_is_safe_for_a_processed_event(client, stripe_server, paid_individual):
    for event in recorded_events(stripe_server):
        deliver(client, event)
    completed = recorded_events(stripe_server, ("checkout.session.completed",))[0]

    call_command("replay_stripe_events", "--id", completed["id"])

    row = StripeEventInbox.objects.get(event_id=completed["id"])
    assert (row.status, row.attempts) == (Status.PROCESSED, 2)
    assert _welcomes(paid_individual) == 1


def test_replay_refuses_unknown_ids_and_missing_selection(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not stored: evt_nope"):
        call_command("replay_stripe_events", "--id", "evt_nope")
    with pytest.raises(CommandError, match="choose what to replay"):
        call_command("replay_stripe_events")
    with pytest.raises(CommandError, match="not a date"):
        call_command("replay_stripe_events", "--since", "last tuesday")


def test_admin_reprocess_action_applies_a_failed_event(
    admin_client, client, stripe_server, paid_individual
):
    stripe_server.add_fault("/v1/subscriptions", status=500, count=1000)
    completed = recorded_events(stripe_server, ("checkout.session.completed",))[0]
    deliver(client, completed)
    stripe_server.state.faults.clear()
    row = StripeEventInbox.objects.get(event_id=completed["id"])

    response = admin_client.post(
        "/admin/billing/stripeeventinbox/",
        {"action": "reprocess", "_selected_action": [row.pk]},
        follow=True,
    )

    assert response.status_code == 200
    row.refresh_from_db()
    assert row.status == Status.PROCESSED
    assert AuditLog.objects.filter(
        actor_type="staff", action="stripe_event_reprocess_requested", target_id=str(row.pk)
    ).exists()
    paid_individual.refresh_from_db()
    assert member_is_entitled(paid_individual)


def test_replay_since_a_date_selects_what_was_received_from_then(
    client, stripe_server, paid_individual
):
    for event in recorded_events(stripe_server):
        deliver(client, event)
    StripeEventInbox.objects.update(received_at=timezone.now() - timedelta(days=3))
    latest = StripeEventInbox.objects.order_by("id").last()
    StripeEventInbox.objects.filter(pk=latest.pk).update(received_at=timezone.now())

    call_command("replay_stripe_events", "--since", timezone.now().date().isoformat())

    assert list(StripeEventInbox.objects.filter(attempts=2).values_list("pk", flat=True)) == [
        latest.pk
    ]


def test_stored_errors_never_contain_the_api_key(client, stripe_server, paid_individual, settings):
    from billing import drain

    stripe_server.add_fault("/v1/subscriptions", status=500, count=1000)
    completed = recorded_events(stripe_server, ("checkout.session.completed",))[0]
    deliver(client, completed)

    row = StripeEventInbox.objects.get(event_id=completed["id"])
    assert settings.STRIPE_SECRET_KEY not in row.last_error + row.traceback
    assert drain._scrub(f"key {settings.STRIPE_SECRET_KEY}") == "key [redacted]"


def _stored_from_the_other_mode(client, stripe_server) -> list[StripeEventInbox]:
    """The purchase's events as a live-mode endpoint would send them to this test-mode one."""
    for event in recorded_events(stripe_server):
        assert deliver(client, {**event, "livemode": True}).status_code == 200
    rows = list(StripeEventInbox.objects.order_by("pk"))
    assert rows and {row.status for row in rows} == {Status.IGNORED}
    return rows


def _nothing_applied(member, rows: list[StripeEventInbox]) -> None:
    member.refresh_from_db()
    assert not member.subscription_id and member.paid_at is None
    assert _welcomes(member) == 0
    for row in rows:
        row.refresh_from_db()
        assert (row.status, row.attempts, row.processed_at) == (Status.IGNORED, 0, None)


def test_admin_reprocess_refuses_events_stored_as_from_the_other_mode(
    admin_client, client, stripe_server, paid_individual
):
    rows = _stored_from_the_other_mode(client, stripe_server)

    response = admin_client.post(
        "/admin/billing/stripeeventinbox/",
        {"action": "reprocess", "_selected_action": [row.pk for row in rows]},
        follow=True,
    )

    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert any("live mode" in m and "not reprocessed" in m for m in shown), shown
    assert not any("queued" in m for m in shown), shown
    _nothing_applied(paid_individual, rows)
    assert not AuditLog.objects.filter(action="stripe_event_reprocess_requested").exists()


def test_replay_command_refuses_events_stored_as_from_the_other_mode(
    client, stripe_server, paid_individual
):
    from django.core.management.base import CommandError

    rows = _stored_from_the_other_mode(client, stripe_server)

    with pytest.raises(CommandError, match="live mode.*never applied"):
        call_command("replay_stripe_events", "--id", rows[0].event_id)
    call_command("replay_stripe_events", "--since", timezone.now().date().isoformat())

    _nothing_applied(paid_individual, rows)


def test_a_forced_reprocess_never_applies_an_ignored_row(client, stripe_server, paid_individual):
    from billing.tasks import process_stripe_event

    rows = _stored_from_the_other_mode(client, stripe_server)

    assert {process_stripe_event(row.pk, force=True) for row in rows} == {"skipped"}
    _nothing_applied(paid_individual, rows)
