"""A purchase end to end: Checkout on the fake's hosted page, signed webhooks sent by the fake
over HTTP to the gateway running in ``live_server``, processed by the task."""

from __future__ import annotations

import pytest

from billing.entitlement import member_is_entitled
from billing.models import StripeEventInbox
from billing.selectors import member_billing_summary
from members.models import SeatTier, Team
from ops.models import Notification
from tests import personas
from tests.providers import pay_checkout, start_company_checkout, start_individual_checkout

pytestmark = pytest.mark.django_db(transaction=True)


def _all_delivered(srv) -> list[dict]:
    deliveries = srv.wait_for_deliveries(len(srv.state.events), timeout=30)
    assert {d["last_status_code"] for d in deliveries} == {200}, deliveries
    return deliveries


def test_individual_purchase(stripe_to_live_server):
    srv = stripe_to_live_server
    member = personas.buyer("grace@example.org")
    session = start_individual_checkout(member)

    pay_checkout(srv, session.id, email="grace@example.org")
    _all_delivered(srv)

    member.refresh_from_db()
    assert member.subscription_id and member.paid_at is not None
    assert member_is_entitled(member)
    summary = member_billing_summary(member)
    assert summary.status == "active" and not summary.cancel_at_period_end
    welcome = Notification.objects.get(member=member, kind="welcome")
    assert (welcome.channel, welcome.recipient) == ("email", "grace@example.org")
    assert not StripeEventInbox.objects.exclude(status=StripeEventInbox.Status.PROCESSED).exists()


def test_company_purchase(stripe_to_live_server):
    srv = stripe_to_live_server
    purchaser = personas.buyer("owner@acme.example")
    team = Team.objects.create(name="Acme", stripe_customer_id=purchaser.stripe_customer_id)
    session = start_company_checkout(purchaser, team, owner_seats=2, team_seats=3)

    pay_checkout(srv, session.id, email="owner@acme.example")
    _all_delivered(srv)

    team.refresh_from_db()
    purchaser.refresh_from_db()
    assert team.subscription_id and (team.owner_seats, team.team_seats) == (2, 3)
    assert team.primary_owner_id == purchaser.pk
    assert (purchaser.team_id, purchaser.seat_tier) == (team.pk, SeatTier.OWNER)
    assert not purchaser.subscription_id  # billed through the team's subscription
    assert member_is_entitled(purchaser)
    assert Notification.objects.filter(member=purchaser, kind="welcome").count() == 1


def test_seats_follow_the_subscription_quantities(stripe_to_live_server):
    import stripe

    srv = stripe_to_live_server
    purchaser = personas.buyer("owner@initech.example")
    team = Team.objects.create(name="Initech", stripe_customer_id=purchaser.stripe_customer_id)
    session = start_company_checkout(purchaser, team, owner_seats=1, team_seats=0)
    pay_checkout(srv, session.id, email="owner@initech.example")
    _all_delivered(srv)
    team.refresh_from_db()
    assert (team.owner_seats, team.team_seats) == (1, 0)

    # An owner adds team seats (the tier had no item yet): counts arrive by webhook.
    stripe.SubscriptionItem.create(
        subscription=team.subscription_id,
        price="price_team_seat",
        quantity=4,
        proration_behavior="always_invoice",
    )
    _all_delivered(srv)

    team.refresh_from_db()
    assert (team.owner_seats, team.team_seats) == (1, 4)
