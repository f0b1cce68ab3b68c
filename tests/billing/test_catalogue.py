"""The plan catalogue: imported from the old price settings, kept by staff in the admin with
prices synced from the fake Stripe over HTTP, and the one answer to "which seats is this
price"."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.urls import reverse
from djstripe.models import Price

from billing.catalogue import (
    plan_prices_problems,
    price_choices,
    price_role,
    prices_sync,
    seat_counts,
)
from billing.models import Plan, PlanPrice
from ops.models import AuditAction, AuditLog
from ops.money import format_amount
from tests import personas
from tests.providers import yearly_prices

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module(personas.CATALOGUE_MIGRATION)


def _catalogue() -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [
        (plan.kind, plan.name, [(p.role, p.stripe_price_id) for p in plan.prices.order_by("pk")])
        for plan in Plan.objects.all()
    ]


# --- the import of the old price settings ---------------------------------------------------


def test_the_migration_imports_the_three_price_settings_once_and_removes_them_on_reverse(
    settings,
):
    MIGRATION.remove_imported_prices(apps, None)
    assert not Plan.objects.exists()
    settings.STRIPE_INDIVIDUAL_PRICE_ID = "price_live_individual"
    settings.STRIPE_OWNER_SEAT_PRICE_ID = "price_live_owner"
    settings.STRIPE_TEAM_SEAT_PRICE_ID = "price_live_team"

    MIGRATION.import_price_settings(apps, None)
    MIGRATION.import_price_settings(apps, None)  # a catalogue that exists is left alone

    assert _catalogue() == [
        ("individual", "Individual membership", [("individual", "price_live_individual")]),
        ("company", "Company plan", [("owner", "price_live_owner"), ("team", "price_live_team")]),
    ]
    assert Plan.objects.filter(visible=True, trial_days=0, allow_promotion_codes=False).count() == 2
    # Nothing was mirrored, yet the site sells what it sold before.
    assert price_role("price_live_owner") == "owner"

    MIGRATION.remove_imported_prices(apps, None)
    assert not Plan.objects.exists() and not PlanPrice.objects.exists()


def test_the_migration_leaves_an_edited_catalogue_alone():
    Plan.objects.filter(kind=Plan.Kind.COMPANY).update(name="Guild charter")

    MIGRATION.import_price_settings(apps, None)

    assert [name for _, name, _ in _catalogue()] == ["Individual membership", "Guild charter"]


# --- which seats a price is -----------------------------------------------------------------


def test_seats_are_counted_by_role_across_plans_intervals_and_inactive_prices():
    other = Plan.objects.create(kind=Plan.Kind.COMPANY, name="Guild", visible=False)
    PlanPrice.objects.create(plan=other, role="owner", stripe_price_id="price_guild_owner")
    PlanPrice.objects.create(
        plan=other, role="team", stripe_price_id="price_guild_team", active=False
    )
    data = {
        "items": {
            "data": [
                {"price": {"id": "price_owner_seat"}, "quantity": 1},
                {"price": {"id": "price_guild_owner"}, "quantity": 2},
                {"price": {"id": "price_guild_team"}, "quantity": 4},
                {"price": {"id": "price_individual"}, "quantity": 1},
            ]
        }
    }

    assert seat_counts(data) == {"owner": 3, "team": 4}
    assert price_role("price_guild_team") == "team"
    assert price_role("price_unknown") is None


def test_amounts_are_formatted_for_their_currency():
    assert format_amount(9900, "usd") == "$99.00"
    assert format_amount(1000, "jpy") == "¥1,000"
    assert format_amount(123456, "eur") == "€1,234.56"
    assert format_amount(1250, "chf") == "12.50 CHF"
    assert format_amount(None, "usd") == ""


# --- the admin ------------------------------------------------------------------------------


def test_staff_sync_prices_from_stripe_and_pick_them_by_name(admin_web, superuser, stripe_server):
    response = admin_web.post(reverse("admin:billing_plan_sync_prices"))

    assert response.status_code == 302
    assert set(Price.objects.values_list("id", flat=True)) == {
        "price_individual",
        "price_owner_seat",
        "price_team_seat",
        "price_individual_yearly",
        "price_owner_seat_yearly",
        "price_team_seat_yearly",
    }
    audit = AuditLog.objects.get(action=AuditAction.BILLING_CATALOGUE_PRICES_SYNCED)
    assert (audit.actor_id, audit.details) == (str(superuser.pk), {"prices": 6})
    assert ("price_team_seat", "Team seat — $49.00 / month") in price_choices()
    assert ("price_team_seat_yearly", "Team seat — $490.00 / year") in price_choices()
    page = admin_web.get(reverse("admin:billing_plan_change", args=[Plan.objects.first().pk]))
    assert "Individual membership — $99.00 / month" in page.content.decode()


def test_a_read_failure_changes_nothing_and_says_so(admin_web, stripe_server):
    stripe_server.state.add_fault("/v1/prices", status=400, count=5)

    response = admin_web.post(reverse("admin:billing_plan_sync_prices"), follow=True)

    assert "Stripe could not be read" in response.content.decode()
    assert not Price.objects.exists()


def test_the_sync_is_a_post_for_staff_who_may_change_plans(support_web, admin_web, stripe_server):
    assert admin_web.get(reverse("admin:billing_plan_sync_prices")).status_code == 405
    assert support_web.post(reverse("admin:billing_plan_sync_prices")).status_code == 403
    assert not Price.objects.exists()


def _plan_form(name: str, kind: str, prices: list[tuple[str, str]]) -> dict[str, str]:
    data = {
        "kind": kind,
        "name": name,
        "description": "",
        "order": "5",
        "visible": "on",
        "trial_days": "0",
        "prices-TOTAL_FORMS": str(len(prices)),
        "prices-INITIAL_FORMS": "0",
        "prices-MIN_NUM_FORMS": "0",
        "prices-MAX_NUM_FORMS": "1000",
    }
    for n, (role, price_id) in enumerate(prices):
        data |= {f"prices-{n}-role": role, f"prices-{n}-stripe_price_id": price_id}
        data[f"prices-{n}-active"] = "on"
    return data


def test_a_company_plan_needs_both_seat_prices_of_each_interval(admin_web, stripe_server):
    PlanPrice.objects.all().delete()  # free the demo prices for the new plan
    yearly = {
        role: stripe_server.state.create_price(
            {
                "product": f"prod_{'owner_seat' if role == 'owner' else 'team_seat'}",
                "unit_amount": "90000",
                "currency": "usd",
                "recurring": {"interval": "year"},
            }
        )["id"]
        for role in ("owner", "team")
    }
    prices_sync(actor=None)
    add = reverse("admin:billing_plan_add")

    monthly = [("owner", "price_owner_seat"), ("team", "price_team_seat")]

    refused = admin_web.post(
        add, _plan_form("Guild", "company", [*monthly, ("owner", yearly["owner"])])
    )
    assert refused.status_code == 200
    assert "The year prices need a team seat price too." in refused.content.decode()
    mixed = admin_web.post(add, _plan_form("Solo", "individual", [("owner", "price_owner_seat")]))
    assert "Individual plans cannot have owner seat prices." in mixed.content.decode()
    typed = admin_web.post(add, _plan_form("Typed", "individual", [("individual", "price_x")]))
    assert "Select a valid choice" in typed.content.decode()
    assert not Plan.objects.filter(name__in=["Guild", "Solo", "Typed"]).exists()

    saved = admin_web.post(add, _plan_form("Guild", "company", [*monthly, *yearly.items()]))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert sorted(Plan.objects.get(name="Guild").prices.values_list("role", flat=True)) == [
        "owner",
        "owner",
        "team",
        "team",
    ]


def test_one_active_price_per_role_and_interval(stripe_server):
    prices_sync(actor=None)
    twice = [("individual", "price_individual", True), ("individual", "price_owner_seat", True)]

    assert plan_prices_problems("individual", twice) == [
        "Only one active individual price can bill every month."
    ]
    assert plan_prices_problems("individual", [twice[0], (*twice[1][:2], False)]) == []


def test_yearly_prices_join_the_imported_plans(stripe_server):
    ids = yearly_prices()

    assert price_role(ids["team"]) == "team"
    assert Plan.objects.get(kind="company").prices.count() == 4
