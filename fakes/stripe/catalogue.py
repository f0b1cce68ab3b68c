"""The demo catalogue the fake starts with, under fixed ids so sandbox settings can name them.

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

DEMO_CATALOGUE: Catalogue = [
    {
        "id": "prod_individual",
        "name": "Individual membership",
        "prices": [
            {"id": INDIVIDUAL_PRICE_ID, "unit_amount": 9900, "currency": "usd", "interval": "month"}
        ],
    },
    {
        "id": "prod_owner_seat",
        "name": "Owner seat",
        "prices": [
            {"id": OWNER_SEAT_PRICE_ID, "unit_amount": 9900, "currency": "usd", "interval": "month"}
        ],
    },
    {
        "id": "prod_team_seat",
        "name": "Team seat",
        "prices": [
            {"id": TEAM_SEAT_PRICE_ID, "unit_amount": 4900, "currency": "usd", "interval": "month"}
        ],
    },
]


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
