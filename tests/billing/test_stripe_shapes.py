"""Reading the API shapes of stripe-python's pinned version (2026-08-26.dahlia)."""

from __future__ import annotations

from datetime import UTC, datetime

from billing.selectors import subscription_item_quantities, subscription_period_end
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


def test_seat_quantities_are_matched_by_price_id():
    data = {
        "items": {
            "data": [
                {"quantity": 2, "price": {"id": "price_owner_seat"}},
                {"quantity": 5, "price": {"id": "price_team_seat"}},
            ]
        }
    }

    assert subscription_item_quantities(data) == {"price_owner_seat": 2, "price_team_seat": 5}
