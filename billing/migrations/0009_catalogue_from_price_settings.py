"""The first plan catalogue: the three prices the gateway sold before it had one.

``STRIPE_INDIVIDUAL_PRICE_ID`` becomes an individual plan, ``STRIPE_OWNER_SEAT_PRICE_ID`` and
``STRIPE_TEAM_SEAT_PRICE_ID`` a company plan, so a deployment sells what it sold before until
staff edit the catalogue. Only an empty catalogue is filled; nothing here calls Stripe (the
admin's "Sync prices from Stripe" mirrors the prices' amounts and intervals).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import migrations


def _price_settings() -> dict[str, str]:
    return {
        "individual": settings.STRIPE_INDIVIDUAL_PRICE_ID,
        "owner": settings.STRIPE_OWNER_SEAT_PRICE_ID,
        "team": settings.STRIPE_TEAM_SEAT_PRICE_ID,
    }


def import_price_settings(apps: Any, schema_editor: Any) -> None:
    Plan = apps.get_model("billing", "Plan")
    PlanPrice = apps.get_model("billing", "PlanPrice")
    if Plan.objects.exists():
        return
    prices = {role: price_id for role, price_id in _price_settings().items() if price_id}
    if "individual" in prices:
        plan = Plan.objects.create(kind="individual", name="Individual membership", order=10)
        PlanPrice.objects.create(plan=plan, role="individual", stripe_price_id=prices["individual"])
    if "owner" in prices:
        plan = Plan.objects.create(kind="company", name="Company plan", order=20)
        for role in ("owner", "team"):
            if role in prices:
                PlanPrice.objects.create(plan=plan, role=role, stripe_price_id=prices[role])


def remove_imported_prices(apps: Any, schema_editor: Any) -> None:
    Plan = apps.get_model("billing", "Plan")
    PlanPrice = apps.get_model("billing", "PlanPrice")
    PlanPrice.objects.filter(stripe_price_id__in=_price_settings().values()).delete()
    Plan.objects.filter(prices__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0008_plan_catalogue")]

    operations = [migrations.RunPython(import_price_settings, remove_imported_prices)]
