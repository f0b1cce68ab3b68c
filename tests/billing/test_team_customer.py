"""One Stripe customer per team: owners never see the purchaser's personal billing.

The billing portal opens a Stripe customer with all its cards, invoices and subscriptions, and
lets whoever opens it cancel them. A company plan bought on the purchaser's personal customer
showed every co-owner that person's own billing.
"""

from __future__ import annotations

from io import StringIO

import pytest
import stripe
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from members.models import Member, SeatTier, Team, User
from tests import personas
from tests.members.stripe_fake import requests_to
from tests.personas import SIGNUP_PASSWORD as PASSWORD
from tests.providers import deliver, pay_checkout, recorded_events

pytestmark = pytest.mark.django_db


def _deliver_all(stripe_server, client: Client) -> None:
    for event in recorded_events(stripe_server):
        assert deliver(client, event).status_code == 200


def _logged_in(member: Member) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


def _co_owner(team: Team, email: str) -> Member:
    user = User.objects.create_user(email, PASSWORD, email_verified_at=timezone.now())
    return Member.objects.create(user=user, team=team, seat_tier=SeatTier.OWNER)


def _portal_customer(stripe_server, response) -> str:
    assert response.status_code == 302, response
    session_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    return stripe_server.state.get_portal_session(session_id)["customer"]


@pytest.fixture
def purchaser(stripe_server) -> Member:
    """Someone who already has a personal Stripe customer (an earlier individual checkout)."""
    return personas.buyer("vivian@acme.example")


def _buy_company(stripe_server, purchaser: Member) -> Team:
    client = _logged_in(purchaser)
    response = client.post(
        reverse("billing:company"), {"company_name": "Acme", "owner_seats": 2, "team_seats": 1}
    )
    assert response.status_code == 302
    session_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    pay_checkout(stripe_server, session_id, email=purchaser.user.email)
    _deliver_all(stripe_server, Client())
    return Team.objects.get(primary_owner=purchaser)


def test_a_company_plan_bills_a_customer_of_its_own(stripe_server, purchaser):
    personal = purchaser.stripe_customer_id
    team = _buy_company(stripe_server, purchaser)

    assert team.subscription_id and team.stripe_customer_id
    assert team.stripe_customer_id != personal
    subscription = stripe.Subscription.retrieve(team.subscription_id)
    assert subscription["customer"] == team.stripe_customer_id
    customer = stripe_server.state.get_customer(team.stripe_customer_id)
    assert (customer["name"], customer["metadata"]["team_id"]) == ("Acme", str(team.pk))
    purchaser.refresh_from_db()
    assert purchaser.stripe_customer_id == personal  # the person's own stays theirs


def test_every_owner_opens_the_team_customer_never_the_purchasers(stripe_server, purchaser):
    team = _buy_company(stripe_server, purchaser)
    co_owner = _co_owner(team, "percy@acme.example")

    for member in (purchaser, co_owner):
        response = _logged_in(member).post(reverse("billing:billing_portal"))
        assert _portal_customer(stripe_server, response) == team.stripe_customer_id


@pytest.fixture
def legacy_team(stripe_server, purchaser) -> Team:
    """A team bought before teams had customers: its subscription is on the purchaser's own."""
    team = Team.objects.create(
        name="Old Guard", primary_owner=purchaser, stripe_customer_id=purchaser.stripe_customer_id
    )
    subscription = stripe.Subscription.create(
        customer=purchaser.stripe_customer_id,
        items=[{"price": "price_owner_seat", "quantity": 2}],
        metadata={"plan_type": "company", "team_id": str(team.pk), "member_id": str(purchaser.pk)},
    )
    team.subscription_id = subscription.id
    team.owner_seats = 2
    team.save()
    Member.objects.filter(pk=purchaser.pk).update(team=team, seat_tier=SeatTier.OWNER)
    return team


def test_a_co_owner_cannot_open_a_purchasers_personal_customer(stripe_server, legacy_team):
    co_owner = _co_owner(legacy_team, "percy@acme.example")
    stripe_server.state.clear_requests()

    response = _logged_in(co_owner).post(reverse("billing:billing_portal"), follow=True)

    assert "personal account of the owner" in response.content.decode()
    assert requests_to(stripe_server, "POST", "/v1/billing_portal") == []


def test_separation_dry_run_changes_nothing_then_the_run_separates(
    stripe_server, purchaser, legacy_team
):
    personal = purchaser.stripe_customer_id
    co_owner = _co_owner(legacy_team, "percy@acme.example")
    stripe_server.state.clear_requests()

    out = StringIO()
    call_command("team_customers_separate", "--dry-run", stdout=out)
    assert f"team {legacy_team.pk} (Old Guard) customer {personal}" in out.getvalue()
    assert "would separate" in out.getvalue()
    purchaser.refresh_from_db()
    assert purchaser.stripe_customer_id == personal
    assert requests_to(stripe_server, "POST", "/v1/customers") == []

    out = StringIO()
    call_command("team_customers_separate", stdout=out)
    assert "separated" in out.getvalue()
    purchaser.refresh_from_db()
    assert purchaser.stripe_customer_id == ""
    customer = stripe_server.state.get_customer(personal)
    assert (customer["name"], customer["metadata"]["team_id"]) == ("Old Guard", str(legacy_team.pk))
    response = _logged_in(co_owner).post(reverse("billing:billing_portal"))
    assert _portal_customer(stripe_server, response) == personal  # now the team's

    # Nothing left to do; the purchaser's next purchase of their own gets a new customer.
    out = StringIO()
    call_command("team_customers_separate", stdout=out)
    assert "every team has a Stripe customer of its own" in out.getvalue()


def test_a_customer_with_the_purchasers_other_subscriptions_is_kept_and_reported(
    stripe_server, purchaser, legacy_team
):
    personal = stripe.Subscription.create(
        customer=purchaser.stripe_customer_id, items=[{"price": "price_individual"}]
    )
    stripe.Subscription.cancel(personal.id)

    out = StringIO()
    call_command("team_customers_separate", stdout=out)

    assert f"kept: the customer also holds {personal.id}" in out.getvalue()
    purchaser.refresh_from_db()
    assert purchaser.stripe_customer_id == legacy_team.stripe_customer_id
