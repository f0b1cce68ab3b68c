"""Reads for member pages and the team lists: plans, invoices and seats claimed (the billing
summary is `billing.selectors`).

Billing state is read from dj-stripe's mirror by **subscription id** (never by customer: one
customer may hold an individual subscription and a company one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from djstripe.models import Invoice, Price

from members.models import Member, SeatTier, Team


@dataclass(frozen=True)
class Plan:
    key: str
    name: str
    price_id: str
    amount: str  # "" when the price is not mirrored yet
    per: str


def _format_amount(unit_amount: int | None, currency: str) -> str:
    if unit_amount is None:
        return ""
    value = f"{unit_amount / 100:,.2f}"
    return f"${value}" if currency.lower() == "usd" else f"{value} {currency.upper()}"


def plan_list() -> list[Plan]:
    """The three purchasable prices, with amounts when dj-stripe has mirrored them."""
    wanted = [
        ("individual", "Individual membership", settings.STRIPE_INDIVIDUAL_PRICE_ID),
        ("owner", "Company owner seat", settings.STRIPE_OWNER_SEAT_PRICE_ID),
        ("team", "Company team seat", settings.STRIPE_TEAM_SEAT_PRICE_ID),
    ]
    prices = {p.id: p for p in Price.objects.filter(id__in=[w[2] for w in wanted])}
    plans = []
    for key, name, price_id in wanted:
        price = prices.get(price_id)
        recurring = (price.recurring or {}) if price else {}
        plans.append(
            Plan(
                key=key,
                name=name,
                price_id=price_id,
                amount=_format_amount(price.unit_amount, price.currency) if price else "",
                per=recurring.get("interval", ""),
            )
        )
    return plans


def member_invoices(*, member: Member, limit: int = 10) -> list[dict[str, Any]]:
    """The latest invoices of the member's subscription, newest first."""
    subscription_id = member.billing_subscription_id
    if not subscription_id:
        return []
    rows = Invoice.objects.filter(
        Q(subscription_id=subscription_id)
        | Q(stripe_data__parent__subscription_details__subscription=subscription_id)
    ).order_by("-created")[:limit]
    return [
        {
            "number": row.stripe_data.get("number") or row.id,
            "created": row.created,
            "amount": _format_amount(
                row.stripe_data.get("total"), row.stripe_data.get("currency") or "usd"
            ),
            "status": row.stripe_data.get("status") or "",
            "url": row.stripe_data.get("hosted_invoice_url") or "",
        }
        for row in rows
    ]


def member_can_manage_billing(*, member: Member) -> bool:
    """Individuals and team owners manage billing; other seats see who does."""
    return member.team_id is None or member.seat_tier == SeatTier.OWNER


def with_seats_claimed(queryset: QuerySet[Team]) -> QuerySet[Team]:
    """Annotate the seats claimed per tier: ``owners_used`` and ``team_used``."""
    return queryset.annotate(
        owners_used=Count("members", filter=Q(members__seat_tier=SeatTier.OWNER)),
        team_used=Count("members", filter=Q(members__seat_tier=SeatTier.TEAM)),
    )
