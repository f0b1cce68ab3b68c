"""Renewal failure and recovery, status-driven cancellation and re-provisioning, the dashboard
summary (driven by the fake Stripe's lifecycle controls), and no dj-stripe webhook route."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from djstripe.enums import WebhookEndpointStatus, WebhookEndpointValidation
from djstripe.models import Event, WebhookEndpoint, WebhookEventTrigger

from billing.entitlement import Access, entitled_member_ids, member_access, member_is_entitled
from billing.models import FailureEpisode
from billing.selectors import member_billing_summary
from members.models import Member
from ops.models import AuditLog, GatewayConfig, Notification
from tests import personas
from tests.providers import (
    deliver,
    pay_checkout,
    recorded_events,
    start_individual_checkout,
    stripe_signature,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscriber(client, stripe_server):
    """An active individual subscriber, all purchase events applied."""
    member = personas.buyer("kay@example.org")
    session = start_individual_checkout(member)
    pay_checkout(stripe_server, session.id, email="kay@example.org")
    for event in recorded_events(stripe_server):
        deliver(client, event)
    member.refresh_from_db()
    assert member_is_entitled(member)
    return member


def _deliver_new(client, srv, seen: set[str]) -> None:
    for event in recorded_events(srv):
        if event["id"] not in seen:
            seen.add(event["id"])
            deliver(client, event)


def test_failed_renewal_opens_one_grace_period(client, stripe_server, subscriber):
    seen = {e["id"] for e in recorded_events(stripe_server)}
    config = GatewayConfig.load()
    config.grace_hours = 36
    config.save()

    stripe_server.state.fail_renewal(subscriber.subscription_id)
    _deliver_new(client, stripe_server, seen)

    episode = FailureEpisode.objects.get(subscription_id=subscriber.subscription_id)
    assert episode.is_open and episode.member_id == subscriber.pk
    assert episode.grace_ends_at - episode.opened_at == timedelta(hours=36)
    summary = member_billing_summary(subscriber)
    assert summary.status == "past_due" and summary.in_failure and not summary.in_debtor
    assert member_is_entitled(subscriber)  # full access during grace

    # Stripe's automatic retry fails again: same episode, same clock.
    stripe_server.state.fail_renewal(subscriber.subscription_id)
    _deliver_new(client, stripe_server, seen)
    assert FailureEpisode.objects.filter(subscription_id=subscriber.subscription_id).count() == 1
    assert FailureEpisode.objects.get().grace_ends_at == episode.grace_ends_at


def test_debtor_phase_ends_entitlement(client, stripe_server, subscriber):
    seen = {e["id"] for e in recorded_events(stripe_server)}
    stripe_server.state.fail_renewal(subscriber.subscription_id)
    _deliver_new(client, stripe_server, seen)
    now = timezone.now()
    FailureEpisode.objects.update(debtor_at=now - timedelta(minutes=1))

    assert member_access(subscriber, now) == Access.DEBTOR
    assert not member_is_entitled(subscriber, now)
    assert entitled_member_ids(Member.objects.select_related("team"), now) == set()


def test_paid_renewal_closes_the_episode(client, stripe_server, subscriber):
    seen = {e["id"] for e in recorded_events(stripe_server)}
    stripe_server.state.fail_renewal(subscriber.subscription_id)
    _deliver_new(client, stripe_server, seen)

    stripe_server.state.recover(subscriber.subscription_id)
    _deliver_new(client, stripe_server, seen)

    episode = FailureEpisode.objects.get(subscription_id=subscriber.subscription_id)
    assert (episode.is_open, episode.close_reason) == (False, FailureEpisode.CloseReason.RECOVERED)
    assert member_billing_summary(subscriber).status == "active"
    assert AuditLog.objects.filter(action="failure_episode_closed").exists()


def test_first_payment_failure_does_not_start_a_grace_period(client, stripe_server):
    import stripe
    from django.conf import settings

    from billing.services import payment_failed_recorded

    member = personas.buyer("lee@example.org")
    stripe_server.state.decline_payments(1)
    sub = stripe.Subscription.create(
        customer=member.stripe_customer_id,
        items=[{"price": settings.STRIPE_INDIVIDUAL_PRICE_ID}],
        metadata={"plan_type": "individual", "member_id": str(member.pk)},
    )
    assert sub.status == "incomplete"
    Member.objects.filter(pk=member.pk).update(subscription_id=sub.id)
    for event in recorded_events(stripe_server, ("invoice.payment_failed",)):
        deliver(client, event)

    assert payment_failed_recorded(subscription_id=sub.id, invoice_id=sub.latest_invoice) is None
    assert not FailureEpisode.objects.exists()
    assert not Notification.objects.filter(kind="payment_failed").exists()


def test_status_that_ends_entitlement_cancels_and_a_new_payment_restores(
    client, stripe_server, subscriber
):
    seen = {e["id"] for e in recorded_events(stripe_server)}
    stripe_server.state.set_status(subscriber.subscription_id, "unpaid")
    _deliver_new(client, stripe_server, seen)

    subscriber.refresh_from_db()
    assert subscriber.cancelled_at is not None and not member_is_entitled(subscriber)

    stripe_server.state.set_status(subscriber.subscription_id, "active")
    _deliver_new(client, stripe_server, seen)

    subscriber.refresh_from_db()
    assert subscriber.cancelled_at is None and member_is_entitled(subscriber)
    assert AuditLog.objects.filter(action="access_restored", target_id=str(subscriber.pk)).exists()
    assert Notification.objects.filter(member=subscriber, kind="welcome").count() == 1


def test_cancel_at_period_end_shows_but_changes_nothing(client, stripe_server, subscriber):
    seen = {e["id"] for e in recorded_events(stripe_server)}
    stripe_server.state.set_cancel_at_period_end(subscriber.subscription_id, True)
    _deliver_new(client, stripe_server, seen)

    subscriber.refresh_from_db()
    assert member_billing_summary(subscriber).cancel_at_period_end
    assert member_is_entitled(subscriber) and subscriber.cancelled_at is None


def test_no_copy_of_the_webhook_secret_in_the_database(settings):
    # After migrate (tests run it too): the signing secret lives in the environment only.
    assert not WebhookEndpoint.objects.filter(secret=settings.STRIPE_WEBHOOK_SECRET).exists()


def test_djstripe_own_webhook_route_is_not_mounted(client, stripe_server, stripe_event, settings):
    # An operator who follows dj-stripe's documentation creates an endpoint row and points
    # Stripe at /stripe/webhook/<uuid>/: that route stored bodies and skipped our handlers.
    endpoint = WebhookEndpoint.objects.create(
        id="we_from_djstripe_docs",
        livemode=False,
        enabled_events=["*"],
        status=WebhookEndpointStatus.enabled,
        url="https://gateway.example/stripe/webhook/",
        secret=settings.STRIPE_WEBHOOK_SECRET,
        djstripe_validation_method=WebhookEndpointValidation.verify_signature,
    )
    stripe_event["type"] = "balance.available"
    stripe_event["data"] = {"object": {"object": "balance", "available": [], "pending": []}}
    body = json.dumps(stripe_event)

    response = client.post(
        f"/stripe/webhook/{endpoint.djstripe_uuid}/",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": stripe_signature(body)},
    )

    assert response.status_code == 404
    assert not WebhookEventTrigger.objects.exists()
    assert not Event.objects.filter(id=stripe_event["id"]).exists()
