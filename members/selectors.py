"""Reads for member pages: plans, the dashboard's billing picture, invoices.

Billing state is read from dj-stripe's mirror by **subscription id** (never by customer: one
customer may hold an individual subscription and a company one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db.models import Q

from billing.models import FailureEpisode
from members.models import Member, SeatTier

STATUS_LABELS = {
    "active": "Active",
    "trialing": "Trial",
    "past_due": "Payment issue",
    "unpaid": "Unpaid",
    "incomplete": "Awaiting payment",
    "incomplete_expired": "Expired",
    "canceled": "Cancelled",
    "paused": "Paused",
}


@dataclass(frozen=True)
class Plan:
    key: str
    name: str
    price_id: str
    amount: str  # "" when the price is not mirrored yet
    per: str


@dataclass(frozen=True)
class BillingView:
    subscription_id: str
    status: str
    status_label: str
    plan: str
    period_end: datetime | None
    cancel_at_period_end: bool
    episode: FailureEpisode | None

    @property
    def has_subscription(self) -> bool:
        return bool(self.subscription_id and self.status)

    @property
    def in_debtor(self) -> bool:
        return self.episode is not None and self.episode.debtor_at is not None


def _format_amount(unit_amount: int | None, currency: str) -> str:
    if unit_amount is None:
        return ""
    value = f"{unit_amount / 100:,.2f}"
    return f"${value}" if currency.lower() == "usd" else f"{value} {currency.upper()}"


def plan_list() -> list[Plan]:
    """The three purchasable prices, with amounts when dj-stripe has mirrored them."""
    from djstripe.models import Price

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


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return None


def _period_end(data: dict[str, Any]) -> datetime | None:
    # Since API 2025-03-31 the billing period lives on each item, not on the subscription.
    ends = [
        item.get("current_period_end")
        for item in (data.get("items") or {}).get("data") or []
        if item.get("current_period_end")
    ]
    return _timestamp(max(ends) if ends else data.get("current_period_end"))


def _plan_name(data: dict[str, Any]) -> str:
    price_ids = {
        ((item.get("price") or {}).get("id") or "")
        for item in (data.get("items") or {}).get("data") or []
    }
    if settings.STRIPE_INDIVIDUAL_PRICE_ID in price_ids:
        return "Individual membership"
    if price_ids & {settings.STRIPE_OWNER_SEAT_PRICE_ID, settings.STRIPE_TEAM_SEAT_PRICE_ID}:
        return "Company plan"
    return ""


def member_billing(*, member: Member) -> BillingView:
    """Subscription status, plan, period end and any open failure episode for the dashboard."""
    from djstripe.models import Subscription

    subscription_id = member.billing_subscription_id
    subscription = (
        Subscription.objects.filter(id=subscription_id).first() if subscription_id else None
    )
    data = subscription.stripe_data if subscription is not None else {}
    status = data.get("status") or ""
    episode = (
        FailureEpisode.objects.filter(subscription_id=subscription_id, closed_at__isnull=True)
        .order_by("-opened_at")
        .first()
        if subscription_id
        else None
    )
    return BillingView(
        subscription_id=subscription_id,
        status=status,
        status_label=STATUS_LABELS.get(status, status.replace("_", " ").capitalize()),
        plan=_plan_name(data),
        period_end=_period_end(data),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        episode=episode,
    )


def member_invoices(*, member: Member, limit: int = 10) -> list[dict[str, Any]]:
    """The latest invoices of the member's subscription, newest first."""
    from djstripe.models import Invoice

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
