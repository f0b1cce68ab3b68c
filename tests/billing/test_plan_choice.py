"""Choosing a plan on the site: the pages list what the catalogue sells, the member picks a
plan and interval, Checkout (the fake Stripe over HTTP) bills that price, and the webhooks
count a company's seats by role whatever the interval."""

from __future__ import annotations

import pytest
import stripe
from django.urls import reverse

from billing.catalogue import prices_sync
from billing.checkout import seats_add
from billing.entitlement import member_is_entitled
from billing.models import Plan, PlanPrice
from members.models import Member, SeatTier, Team
from tests import personas
from tests.journeys import converge
from tests.members.stripe_fake import requests_to
from tests.providers import pay_checkout, yearly_prices

pytestmark = pytest.mark.django_db


def _session_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _line_items(srv, url: str) -> list[tuple[str, int]]:
    items = srv.state.checkout_line_items[_session_id(url)]
    return [(item["price"]["id"], item["quantity"]) for item in items]


@pytest.fixture
def buyer(client, stripe_server) -> Member:
    member = personas.buyer("yvaine@example.org")
    client.force_login(member.user)
    return member


def test_the_landing_page_lists_visible_plans_with_each_interval_priced(client, stripe_server):
    yearly_prices()
    hidden = Plan.objects.create(kind=Plan.Kind.INDIVIDUAL, name="Founders", visible=False)
    PlanPrice.objects.create(plan=hidden, role="individual", stripe_price_id="price_founders")
    yen = Plan.objects.create(kind=Plan.Kind.INDIVIDUAL, name="Tokyo chapter", order=15)
    PlanPrice.objects.create(
        plan=yen,
        role="individual",
        stripe_price_id=stripe.Price.create(
            product="prod_individual",
            unit_amount=1000,
            currency="jpy",
            recurring={"interval": "month"},
        ).id,
    )
    prices_sync(actor=None)

    body = client.get(reverse("billing:landing")).content.decode()

    assert "$99.00 per month" in body and "$990.00 per year" in body
    assert "¥1,000 per month" in body
    assert "$99.00 per owner seat and $49.00 per team seat, per month" in body
    assert "$990.00 per owner seat and $490.00 per team seat, per year" in body
    assert "Founders" not in body
    assert body.index("Individual membership") < body.index("Tokyo chapter")


def test_the_dashboard_offers_each_interval_as_a_labelled_radio(client, buyer, stripe_server):
    ids = yearly_prices()

    body = client.get(reverse("billing:dashboard")).content.decode()

    assert "<legend>Join as an individual</legend>" in body
    assert (
        '<label class="plan-option"><input type="radio" name="price" value="price_individual"'
        " checked> Individual membership: $99.00 per month</label>"
    ) in body
    assert f'value="{ids["individual"]}"> Individual membership: $990.00 per year' in body


def test_choosing_the_yearly_price_starts_checkout_for_that_price(client, buyer, stripe_server):
    ids = yearly_prices()

    response = client.post(reverse("billing:checkout_individual"), {"price": ids["individual"]})

    assert response.status_code == 302
    assert _line_items(stripe_server, response["Location"]) == [(ids["individual"], 1)]


@pytest.mark.parametrize("case", ["hidden plan", "inactive price", "seat price", "made up"])
def test_a_price_not_on_sale_is_refused_and_nothing_is_created(client, buyer, stripe_server, case):
    ids = yearly_prices()
    if case == "hidden plan":
        Plan.objects.filter(kind=Plan.Kind.INDIVIDUAL).update(visible=False)
        price = ids["individual"]
    elif case == "inactive price":
        PlanPrice.objects.filter(stripe_price_id=ids["individual"]).update(active=False)
        price = ids["individual"]
    else:
        price = ids["owner"] if case == "seat price" else "price_free_forever"

    response = client.post(reverse("billing:checkout_individual"), {"price": price}, follow=True)

    body = response.content.decode()
    assert "Choose one of the plans shown." in body or "not available" in body
    assert not requests_to(stripe_server, "POST", "/v1/checkout/sessions")


def test_a_company_option_not_on_sale_is_a_form_error(client, buyer, stripe_server):
    ids = yearly_prices()
    PlanPrice.objects.filter(stripe_price_id=ids["team"]).update(active=False)

    response = client.post(
        reverse("billing:company"),
        {"company_name": "Acme", "owner_seats": 1, "team_seats": 1, "price": ids["owner"]},
    )

    assert response.status_code == 400
    assert "Choose one of the plans shown." in response.content.decode()
    assert not Team.objects.exists()
    assert not requests_to(stripe_server, "POST", "/v1/checkout/sessions")


def test_a_yearly_company_plan_is_paid_and_its_seats_counted_through_the_webhooks(
    world, client, buyer
):
    ids = yearly_prices()
    page = client.get(reverse("billing:company") + f"?price={ids['owner']}").content.decode()
    assert f'value="{ids["owner"]}" checked>' in page

    response = client.post(
        reverse("billing:company"),
        {"company_name": "Stormhold", "owner_seats": 2, "team_seats": 0, "price": ids["owner"]},
    )
    assert response.status_code == 302
    assert _line_items(world.stripe, response["Location"]) == [(ids["owner"], 2)]
    pay_checkout(world.stripe, _session_id(response["Location"]), email=buyer.user.email)
    world.deliver_new()

    team = Team.objects.get()
    buyer.refresh_from_db()
    assert (team.owner_seats, team.team_seats) == (2, 0)
    assert (buyer.team_id, buyer.seat_tier) == (team.pk, SeatTier.OWNER)
    assert member_is_entitled(buyer)
    owner = world.link(buyer, "yvaine", role=None)
    converge(owner)
    assert world.roles(owner) == ["lord"]

    # The first team seats are billed at the team-seat price of the same plan and interval.
    seats_add(team=team, tier=SeatTier.TEAM, quantity=3, actor=owner)
    world.deliver_new()
    team.refresh_from_db()
    assert (team.owner_seats, team.team_seats) == (2, 3)
    items = stripe.SubscriptionItem.list(subscription=team.subscription_id)
    assert sorted((i.price.id, i.quantity) for i in items) == sorted(
        [(ids["owner"], 2), (ids["team"], 3)]
    )


def test_a_plan_with_a_trial_says_how_many_days_are_free(client, buyer, stripe_server):
    prices_sync(actor=None)
    Plan.objects.filter(kind=Plan.Kind.INDIVIDUAL).update(trial_days=14)

    landing = client.get(reverse("billing:landing")).content.decode()
    dashboard = client.get(reverse("billing:dashboard")).content.decode()

    assert landing.count("Free for the first 14 days.") == 1  # the individual plan only
    assert "Individual membership: $99.00 per month, 14 days free</label>" in landing
    assert "Individual membership: $99.00 per month, 14 days free</label>" in dashboard
