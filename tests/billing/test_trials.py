"""Free trials: Checkout starts them, trialing members are entitled and see when the trial
ends, the reminder goes out once before the end, and Stripe's outcome at the end (a paid
period, or a failed payment without a card) is applied like any other change."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import stripe
import time_machine
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from billing.entitlement import member_is_entitled
from billing.models import FailureEpisode, Plan
from billing.selectors import member_billing_summary
from members.models import Member
from ops.models import Notification
from tests import personas
from tests.providers import deliver, pay_checkout, recorded_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def traveller() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        yield traveller


@pytest.fixture
def trial_plan() -> Plan:
    plan = Plan.objects.get(kind=Plan.Kind.INDIVIDUAL)
    plan.trial_days = 14
    plan.save()
    return plan


def _trialing(world, email: str) -> Member:
    """A member who started the individual plan's trial through our Checkout."""
    member = personas.buyer(email)
    world.client.force_login(member.user)
    response = world.client.post(reverse("billing:checkout_individual"))
    session_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    assert world.stripe.state.session_subscription_data[session_id]["trial_period_days"] == 14
    pay_checkout(world.stripe, session_id, email=email)
    world.deliver_new()
    member.refresh_from_db()
    return member


def test_a_plan_without_trial_days_starts_no_trial(client, stripe_server):
    member = personas.buyer("tess@example.org")
    client.force_login(member.user)

    response = client.post(reverse("billing:checkout_individual"))

    session_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    assert stripe_server.state.session_subscription_data[session_id]["trial_period_days"] is None


def test_a_trial_is_entitled_reminded_once_and_becomes_a_paid_period(world, trial_plan, traveller):
    member = _trialing(world, "tristan@example.org")

    summary = member_billing_summary(member)
    assert summary.status == "trialing" and member_is_entitled(member)
    assert summary.trial_end is not None
    assert summary.trial_end - timezone.now() > timedelta(days=13)
    page = world.client.get(reverse("billing:dashboard")).content.decode()
    assert f"Trial until</dt><dd>{summary.trial_end:%-d %B %Y}" in page
    assert not Notification.objects.filter(kind="trial_ending").exists()  # 14 days to go

    traveller.shift(timedelta(days=11, hours=1))  # Stripe warns three days before the end
    world.stripe.state.trial_will_end(member.subscription_id)
    world.deliver_new()
    (event,) = recorded_events(world.stripe, ("customer.subscription.trial_will_end",))
    assert deliver(world.client, event).status_code == 200  # delivered again
    world.deliver_new()

    (reminder,) = Notification.objects.filter(kind="trial_ending")
    assert (reminder.recipient, reminder.member_id) == ("tristan@example.org", member.pk)
    assert reminder.context["has_card"] is True

    world.stripe.state.end_trial(member.subscription_id)
    world.deliver_new()
    member.refresh_from_db()
    summary = member_billing_summary(member)
    assert summary.status == "active" and summary.trial_end is None
    assert member_is_entitled(member)
    assert not FailureEpisode.objects.exists()


def test_a_trial_ending_without_a_card_follows_stripes_failed_payment(world, trial_plan):
    member = personas.buyer("percy@example.org")
    metadata = {"plan_type": "individual", "member_id": str(member.pk)}
    session = stripe.checkout.Session.create(
        mode="subscription",
        customer=member.stripe_customer_id,
        line_items=[{"price": settings.STRIPE_INDIVIDUAL_PRICE_ID, "quantity": 1}],
        metadata=metadata,
        subscription_data={"metadata": metadata, "trial_period_days": 14},
        payment_method_collection="if_required",
        success_url=f"{settings.APP_URL}/dashboard/",
        cancel_url=f"{settings.APP_URL}/dashboard/",
    )
    pay_checkout(world.stripe, session.id, email="percy@example.org", card="")
    world.deliver_new()
    member.refresh_from_db()
    assert member_billing_summary(member).status == "trialing"

    world.stripe.state.end_trial(member.subscription_id)
    world.deliver_new()

    member.refresh_from_db()
    assert member_billing_summary(member).status == "past_due"
    episode = FailureEpisode.objects.get(subscription_id=member.subscription_id)
    assert episode.closed_at is None and member_is_entitled(member)  # the grace period
    assert Notification.objects.filter(member=member, kind="payment_failed").exists()
