"""Reading the API shapes of stripe-python's pinned version (2026-08-26.dahlia)."""

from __future__ import annotations

from datetime import UTC, datetime

from billing.catalogue import seat_counts
from billing.selectors import subscription_period_end
from billing.truth import invoice_subscription_id


def test_invoice_names_its_subscription_under_parent():
    invoice = {
        "id": "in_1",
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": "sub_1"},
        },
    }

    assert invoice_subscription_id(invoice) == "sub_1"


def test_invoice_without_parent_falls_back_to_its_lines():
    invoice = {
        "id": "in_1",
        "parent": None,
        "lines": {
            "data": [
                {"parent": {"subscription_item_details": {"subscription": "sub_2"}}},
            ]
        },
    }

    assert invoice_subscription_id(invoice) == "sub_2"


def test_one_off_invoice_has_no_subscription():
    assert invoice_subscription_id({"id": "in_1", "parent": None, "lines": {"data": []}}) == ""


def test_period_end_comes_from_the_items():
    data = {
        "items": {
            "data": [
                {"current_period_end": 1_800_000_000, "price": {"id": "price_owner_seat"}},
                {"current_period_end": 1_800_086_400, "price": {"id": "price_team_seat"}},
            ]
        }
    }

    assert subscription_period_end(data) == datetime.fromtimestamp(1_800_086_400, UTC)
    assert subscription_period_end({"items": {"data": []}}) is None


def test_seat_quantities_are_counted_by_the_role_of_each_price():
    data = {
        "items": {
            "data": [
                {"quantity": 2, "price": {"id": "price_owner_seat"}},
                {"quantity": 5, "price": {"id": "price_team_seat"}},
                {"quantity": 1, "price": "price_owner_seat_yearly"},
                {"quantity": 9, "price": {"id": "price_not_in_the_catalogue"}},
            ]
        }
    }
    roles = {
        "price_owner_seat": "owner",
        "price_team_seat": "team",
        "price_owner_seat_yearly": "owner",
    }

    assert seat_counts(data, roles=roles) == {"owner": 3, "team": 5}
