"""Checkout, billing portal and seat additions against the fake Stripe server over HTTP."""

from __future__ import annotations

import pytest
import stripe
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from billing.checkout import CheckoutError, checkout_company_start, seats_add
from members.models import Member, SeatTier, Team, User
from ops.models import AuditLog
from tests.members.stripe_fake import (
    individual_subscriber,
    paid_subscription,
    requests_to,
)
from tests.personas import SIGNUP_PASSWORD as PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def buyer(client) -> Member:
    """A signed-up, logged-in member with no subscription and no Stripe customer yet."""
    user = User.objects.create_user("buyer@example.org", PASSWORD, email_verified_at=timezone.now())
    client.force_login(user)
    return Member.objects.create(user=user)


def session_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def line_items(server, url: str) -> list[tuple[str, int]]:
    items = server.state.checkout_line_items[session_id(url)]
    return [(item["price"]["id"], item["quantity"]) for item in items]


def test_individual_checkout_creates_customer_lazily_and_a_session(client, buyer, stripe_server):
    response = client.post(reverse("billing:checkout_individual"))

    assert response.status_code == 302
    url = response["Location"]
    assert url.startswith(stripe_server.url)
    session = stripe_server.state.get_checkout_session(session_id(url))
    buyer.refresh_from_db()
    assert buyer.stripe_customer_id == session["customer"]
    assert (
        stripe_server.state.get_customer(buyer.stripe_customer_id)["email"] == "buyer@example.org"
    )
    assert session["mode"] == "subscription"
    assert session["client_reference_id"] == f"member-{buyer.pk}"
    assert session["metadata"] == {"plan_type": "individual", "member_id": str(buyer.pk)}
    assert stripe_server.state.session_subscription_data[session["id"]]["metadata"] == {
        "plan_type": "individual",
        "member_id": str(buyer.pk),
    }
    assert session["success_url"] == f"{settings.APP_URL}/dashboard/?checkout=success"
    assert session["cancel_url"] == f"{settings.APP_URL}/dashboard/?checkout=cancel"
    assert line_items(stripe_server, url) == [(settings.STRIPE_INDIVIDUAL_PRICE_ID, 1)]
    assert AuditLog.objects.filter(action="billing.checkout_started").count() == 1

    # A second attempt (abandoned the first) reuses the customer.
    again = client.post(reverse("billing:checkout_individual"))
    assert again["Location"] != url
    assert len(requests_to(stripe_server, "POST", "/v1/customers")) == 1


def test_company_checkout_omits_zero_quantity_items_and_names_the_pending_team(
    client, buyer, stripe_server
):
    response = client.post(
        reverse("billing:company"),
        {"company_name": "  Acme Widgets ", "owner_seats": 2, "team_seats": 0},
    )

    assert response.status_code == 302
    url = response["Location"]
    team = Team.objects.get()
    assert team.name == "Acme Widgets"
    assert team.primary_owner == buyer
    assert team.subscription_id is None
    assert team.checkout_session_id == session_id(url)
    assert line_items(stripe_server, url) == [(settings.STRIPE_OWNER_SEAT_PRICE_ID, 2)]
    session = stripe_server.state.get_checkout_session(session_id(url))
    expected = {"plan_type": "company", "member_id": str(buyer.pk), "team_id": str(team.pk)}
    assert session["metadata"] == expected
    assert stripe_server.state.session_subscription_data[session["id"]]["metadata"] == expected
    assert session["client_reference_id"] == f"team-{team.pk}"
    assert session["cancel_url"] == f"{settings.APP_URL}/company/?checkout=cancel"
    buyer.refresh_from_db()
    assert buyer.team is None  # joins the team only when the payment is confirmed


def test_abandoned_company_checkout_then_retry_reuses_the_pending_team(
    client, buyer, stripe_server
):
    first = client.post(
        reverse("billing:company"), {"company_name": "Acme", "owner_seats": 1, "team_seats": 0}
    )
    retry = client.post(
        reverse("billing:company"),
        {"company_name": "Acme Ltd", "owner_seats": 1, "team_seats": 3},
    )

    assert first.status_code == retry.status_code == 302
    team = Team.objects.get()
    assert team.name == "Acme Ltd"
    assert team.checkout_session_id == session_id(retry["Location"])
    assert line_items(stripe_server, retry["Location"]) == [
        (settings.STRIPE_OWNER_SEAT_PRICE_ID, 1),
        (settings.STRIPE_TEAM_SEAT_PRICE_ID, 3),
    ]
    session = stripe_server.state.get_checkout_session(session_id(retry["Location"]))
    assert session["metadata"]["team_id"] == str(team.pk)


@pytest.mark.parametrize(
    "data",
    [
        {"company_name": "ab", "owner_seats": 1, "team_seats": 0},
        {"company_name": "x" * 101, "owner_seats": 1, "team_seats": 0},
        {"company_name": "Acme", "owner_seats": 0, "team_seats": 2},
        {"company_name": "Acme", "owner_seats": 1, "team_seats": -1},
        {"company_name": "Acme", "owner_seats": "many", "team_seats": 0},
    ],
)
def test_bad_company_details_are_refused_and_change_nothing(client, buyer, stripe_server, data):
    response = client.post(reverse("billing:company"), data)

    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert not Team.objects.exists()
    assert stripe_server.state.request_log() == []


def test_entitled_member_cannot_buy_the_individual_plan_again(client, buyer, stripe_server):
    """A second individual plan is refused; a company plan is a move (test_plan_change.py)."""
    individual_subscriber(buyer, stripe_server)
    sessions_before = len(requests_to(stripe_server, "POST", "/v1/checkout/sessions"))

    individual = client.post(reverse("billing:checkout_individual"), follow=True)

    assert "You already have an active membership." in individual.content.decode()
    assert len(requests_to(stripe_server, "POST", "/v1/checkout/sessions")) == sessions_before
    assert not Team.objects.exists()


def test_stripe_outage_shows_a_clear_error_and_changes_nothing(client, buyer, stripe_server):
    stripe_server.state.add_fault("/v1/checkout/sessions", status=500, count=10)

    response = client.post(
        reverse("billing:company"), {"company_name": "Acme", "owner_seats": 1, "team_seats": 0}
    )

    assert response.status_code == 400
    assert "The payment service is not available right now." in response.content.decode()
    assert not Team.objects.exists()
    buyer.refresh_from_db()
    assert buyer.stripe_customer_id == ""  # rolled back with the rest
    # Bounded retries: the first try plus STRIPE_MAX_NETWORK_RETRIES.
    attempts = requests_to(stripe_server, "POST", "/v1/checkout/sessions")
    assert len(attempts) == 1 + settings.STRIPE_MAX_NETWORK_RETRIES


def test_billing_portal_is_a_fresh_session_per_click(client, buyer, stripe_server):
    individual_subscriber(buyer, stripe_server)

    first = client.post(reverse("billing:billing_portal"))
    second = client.post(reverse("billing:billing_portal"))

    assert first.status_code == second.status_code == 302
    assert first["Location"] != second["Location"]
    portal_calls = requests_to(stripe_server, "POST", "/v1/billing_portal/sessions")
    assert len(portal_calls) == 2
    session = stripe_server.state.get_portal_session(session_id(second["Location"]))
    buyer.refresh_from_db()
    assert session["customer"] == buyer.stripe_customer_id
    assert session["return_url"] == f"{settings.APP_URL}/billing/"
    assert AuditLog.objects.filter(action="billing.portal_opened").count() == 2


def test_billing_portal_without_a_customer_explains_why(client, buyer, stripe_server):
    response = client.post(reverse("billing:billing_portal"), follow=True)

    assert "There is no billing account yet." in response.content.decode()
    assert requests_to(stripe_server, "POST", "/v1/billing_portal") == []


@pytest.fixture
def company(buyer, stripe_server) -> Team:
    """A paid company plan with one owner seat and no team-seat item."""
    url = checkout_company_start(member=buyer, company_name="Acme", owner_seats=1, team_seats=0)
    team = Team.objects.get()
    team.subscription_id = paid_subscription(stripe_server, url)
    team.save()
    Member.objects.filter(pk=buyer.pk).update(team=team, seat_tier=SeatTier.OWNER)
    stripe_server.state.clear_requests()
    return team


def _quantities(subscription_id: str) -> dict[str, int]:
    sub = stripe.Subscription.retrieve(subscription_id)
    return {item.price.id: item.quantity for item in sub["items"].auto_paging_iter()}


def test_seat_add_creates_the_missing_item_with_always_invoice(company, buyer, stripe_server):
    change = seats_add(team=company, tier=SeatTier.TEAM, quantity=2, actor=buyer)

    assert (change.previous_quantity, change.new_quantity) == (0, 2)
    assert _quantities(company.subscription_id) == {
        settings.STRIPE_OWNER_SEAT_PRICE_ID: 1,
        settings.STRIPE_TEAM_SEAT_PRICE_ID: 2,
    }
    (create,) = requests_to(stripe_server, "POST", "/v1/subscription_items")
    assert create["params"]["proration_behavior"] == "always_invoice"
    company.refresh_from_db()
    assert company.team_seats == 0  # counts follow Stripe's update event, not this call
    audit = AuditLog.objects.get(action="billing.seats_added")
    assert audit.details["new_quantity"] == 2 and audit.actor_id == str(buyer.pk)


def test_seat_add_grows_an_existing_item_and_invoices_the_proration(company, stripe_server):
    invoices_before = len(stripe.Invoice.list(subscription=company.subscription_id).data)

    change = seats_add(team=company, tier=SeatTier.OWNER, quantity=3)

    assert (change.previous_quantity, change.new_quantity) == (1, 4)
    assert _quantities(company.subscription_id) == {settings.STRIPE_OWNER_SEAT_PRICE_ID: 4}
    (update,) = requests_to(stripe_server, "POST", f"/v1/subscription_items/{change.item_id}")
    assert update["params"]["proration_behavior"] == "always_invoice"
    invoices = stripe.Invoice.list(subscription=company.subscription_id).data
    assert len(invoices) == invoices_before + 1


@pytest.mark.parametrize("quantity", [0, 51, -1])
def test_seat_add_quantity_out_of_range_is_refused(company, stripe_server, quantity):
    with pytest.raises(CheckoutError, match="between 1 and 50"):
        seats_add(team=company, tier=SeatTier.TEAM, quantity=quantity)

    assert stripe_server.state.request_log() == []


def test_seat_add_needs_a_paid_team(buyer, stripe_server):
    pending = Team.objects.create(name="Pending", primary_owner=buyer)

    with pytest.raises(CheckoutError, match="no active subscription"):
        seats_add(team=pending, tier=SeatTier.TEAM, quantity=1)


def test_owner_buys_seats_from_the_team_page(client, company, stripe_server):
    response = client.post(reverse("billing:team_seats_add"), {"tier": "team", "quantity": 3})

    assert response.status_code == 302
    assert _quantities(company.subscription_id)[settings.STRIPE_TEAM_SEAT_PRICE_ID] == 3
    page = client.get(reverse("billing:team")).content.decode()
    assert "3 seats added and invoiced" in page


@pytest.mark.parametrize("quantity", ["", "0", "51", "many"])
def test_team_page_refuses_a_bad_seat_quantity_without_calling_stripe(
    client, company, stripe_server, quantity
):
    client.post(reverse("billing:team_seats_add"), {"tier": "team", "quantity": quantity})

    assert stripe_server.state.request_log() == []
    page = client.get(reverse("billing:team")).content.decode()
    assert "Add between 1 and 50 seats at a time." in page


def test_only_an_owner_of_the_team_can_buy_seats(client, company, stripe_server):
    outsider = User.objects.create_user(
        "outsider@example.org", PASSWORD, email_verified_at=timezone.now()
    )
    Member.objects.create(user=outsider)
    client.force_login(outsider)

    response = client.post(reverse("billing:team_seats_add"), {"tier": "team", "quantity": 1})

    assert response.status_code == 404
    assert stripe_server.state.request_log() == []
