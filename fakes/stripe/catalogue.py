"""The demo catalogue the fake starts with, under fixed ids so sandbox settings can name them:
each product bills monthly or yearly (two months free), and sandbox mode adds the demo
promotion code ``WELCOME20`` (:data:`DEMO_PROMOTION`).

A seed file (``python -m fakes.stripe --seed-file catalogue.json``) replaces it; its format is
the same list of products, each with its prices::

    [{"id": "prod_x", "name": "X", "prices": [{"id": "price_x", "unit_amount": 500,
      "currency": "usd", "interval": "month"}]}]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Catalogue = list[dict[str, Any]]

INDIVIDUAL_PRICE_ID = "price_individual"
OWNER_SEAT_PRICE_ID = "price_owner_seat"
TEAM_SEAT_PRICE_ID = "price_team_seat"
INDIVIDUAL_YEARLY_PRICE_ID = "price_individual_yearly"
OWNER_SEAT_YEARLY_PRICE_ID = "price_owner_seat_yearly"
TEAM_SEAT_YEARLY_PRICE_ID = "price_team_seat_yearly"


def _product(product_id: str, name: str, monthly: str, yearly: str, amount: int) -> dict[str, Any]:
    """A product billed ``amount`` cents a month, or ten times that a year."""
    return {
        "id": product_id,
        "name": name,
        "prices": [
            {"id": monthly, "unit_amount": amount, "currency": "usd", "interval": "month"},
            {"id": yearly, "unit_amount": amount * 10, "currency": "usd", "interval": "year"},
        ],
    }


DEMO_CATALOGUE: Catalogue = [
    _product(
        "prod_individual",
        "Individual membership",
        INDIVIDUAL_PRICE_ID,
        INDIVIDUAL_YEARLY_PRICE_ID,
        9900,
    ),
    _product(
        "prod_owner_seat", "Owner seat", OWNER_SEAT_PRICE_ID, OWNER_SEAT_YEARLY_PRICE_ID, 9900
    ),
    _product("prod_team_seat", "Team seat", TEAM_SEAT_PRICE_ID, TEAM_SEAT_YEARLY_PRICE_ID, 4900),
]

# The promotion code a sandbox buyer can type on the hosted Checkout page (when the plan
# allows promotion codes): 20 % off the first invoice that costs something.
DEMO_PROMOTION: dict[str, Any] = {
    "coupon": {"id": "coupon_welcome20", "name": "Welcome", "percent_off": 20, "duration": "once"},
    "promotion_code": {"id": "promo_welcome20", "code": "WELCOME20"},
}


def load_catalogue(path: str | Path) -> Catalogue:
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        data = data.get("products", [])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of products")
    for product in data:
        if "id" not in product or "name" not in product:
            raise ValueError(f"{path}: every product needs an id and a name")
        for price in product.get("prices", []):
            if "id" not in price or "unit_amount" not in price:
                raise ValueError(f"{path}: every price needs an id and a unit_amount")
    return data
