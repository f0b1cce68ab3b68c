"""Billing reads for pages: the mirrored subscription, its plan, period and failure state.

Stripe is the source of truth, mirrored by dj-stripe's ``Subscription`` rows (whose fields live
in ``stripe_data``). Everything is keyed by **subscription id** — a member's own (individual)
or their team's (seat) — never by customer id: one customer may hold several subscriptions,
and a pending company checkout must never capture its purchaser's individual events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe
from django.core.cache import cache
from django.utils import timezone
from djstripe.models import Product, Subscription

from billing.catalogue import PlanOption, option_billed, subscription_price_ids
from billing.entitlement import Access, member_access
from billing.models import FailureEpisode
from members.models import Member
from ops.money import format_amount

DISCOUNTS_CACHE_SECONDS = 3600


def subscription_for(member: Member) -> Subscription | None:
    subscription_id = member.billing_subscription_id
    if not subscription_id:
        return None
    return Subscription.objects.filter(id=subscription_id).first()


def subscription_status(subscription: Subscription | None) -> str:
    if subscription is None:
        return ""
    return str(subscription.stripe_data.get("status") or "")


def open_failure_episode(subscription_id: str) -> FailureEpisode | None:
    if not subscription_id:
        return None
    return FailureEpisode.objects.filter(
        subscription_id=subscription_id, closed_at__isnull=True
    ).first()


def subscription_period_end(stripe_data: dict[str, Any]) -> datetime | None:
    """The latest ``current_period_end`` across the items (periods live on items)."""
    ends = [
        item.get("current_period_end")
        for item in (stripe_data.get("items") or {}).get("data") or []
        if item.get("current_period_end")
    ]
    if not ends:
        legacy = stripe_data.get("current_period_end")
        ends = [legacy] if legacy else []
    return datetime.fromtimestamp(max(ends), UTC) if ends else None


def _plan_name(stripe_data: dict[str, Any]) -> str:
    names = []
    for item in (stripe_data.get("items") or {}).get("data") or []:
        price = item.get("price") or {}
        if not isinstance(price, dict):
            continue
        name = price.get("nickname") or ""
        product = price.get("product")
        if not name and product:
            product_id = product.get("id") if isinstance(product, dict) else product
            name = (
                Product.objects.filter(id=product_id).values_list("name", flat=True).first() or ""
            )
        if name and name not in names:
            names.append(name)
    return ", ".join(names)


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
class BillingSummary:
    subscription_id: str
    status: str
    entitled: bool
    plan_name: str
    period_end: datetime | None
    cancel_at_period_end: bool
    in_failure: bool
    grace_ends_at: datetime | None
    in_debtor: bool
    suspended: bool  # an open dispute on a payment of the subscription
    removal_due_at: datetime | None
    trial_end: datetime | None = None  # while trialing
    discounts: list[str] = field(default_factory=list)
    option: PlanOption | None = None  # the catalogue option billed (None when not in it)

    @property
    def price(self) -> str:
        """What the plan costs: "$99.00 per month" ('' when not in the catalogue)."""
        return self.option.label if self.option is not None else ""

    @property
    def has_subscription(self) -> bool:
        return bool(self.subscription_id and self.status)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status.replace("_", " ").capitalize())


def _discount_label(discount: Any) -> str:
    """``SPRING25: 25% off for 3 months`` from an expanded discount (coupon and code)."""
    coupon = (discount.get("source") or {}).get("coupon") or discount.get("coupon") or {}
    if isinstance(coupon, str):
        return coupon
    if coupon.get("percent_off"):
        off = f"{coupon['percent_off']:g}% off"
    else:
        off = f"{format_amount(coupon.get('amount_off'), coupon.get('currency') or '')} off"
    duration = coupon.get("duration")
    if duration == "repeating":
        months = coupon.get("duration_in_months")
        off += f" for {months} month{'s' if months != 1 else ''}"
    elif duration == "once":
        off += " on one invoice"
    code = discount.get("promotion_code") or {}
    # An expanded object (stripe-python's are not dicts) or an id when it was not expanded.
    name = "" if isinstance(code, str) else code.get("code")
    return f"{name or coupon.get('name') or coupon.get('id')}: {off}"


def subscription_discounts(subscription_id: str, stripe_data: dict[str, Any]) -> list[str]:
    """The discounts a subscription carries, for people (``SPRING25: 25% off for 3 months``).

    The mirror holds only their ids, so the first look asks Stripe (coupon and promotion code
    expanded) and the answer is cached while the ids stay the same; a failed read shows none.
    """
    ids = [
        d if isinstance(d, str) else str(d.get("id")) for d in stripe_data.get("discounts") or []
    ]
    if not subscription_id or not ids:
        return []
    key = f"billing:discounts:{subscription_id}:{','.join(ids)}"
    labels = cache.get(key)
    if labels is None:
        try:
            remote = stripe.Subscription.retrieve(
                subscription_id, expand=["discounts.source.coupon", "discounts.promotion_code"]
            )
        except stripe.StripeError:
            return []
        labels = [
            _discount_label(d) for d in remote.get("discounts") or [] if not isinstance(d, str)
        ]
        cache.set(key, labels, DISCOUNTS_CACHE_SECONDS)
    return labels


def member_billing_summary(member: Member, now: datetime | None = None) -> BillingSummary:
    """What the dashboard shows about billing, from the mirrored subscription."""
    now = now or timezone.now()
    subscription = subscription_for(member)
    data = subscription.stripe_data if subscription is not None else {}
    status = subscription_status(subscription)
    episode = open_failure_episode(member.billing_subscription_id)
    outcome = member_access(member, now)
    in_debtor = outcome == Access.DEBTOR
    return BillingSummary(
        subscription_id=member.billing_subscription_id,
        status=status,
        entitled=outcome == Access.ENTITLED,
        plan_name=_plan_name(data),
        period_end=subscription_period_end(data),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        in_failure=episode is not None,
        grace_ends_at=episode.grace_ends_at if episode else None,
        in_debtor=in_debtor,
        suspended=outcome == Access.SUSPENDED,
        removal_due_at=episode.removal_due_at if episode else None,
        trial_end=trial_end(data),
        discounts=subscription_discounts(member.billing_subscription_id, data),
        option=option_billed(subscription_price_ids(data)) if data else None,
    )


def trial_end(stripe_data: dict[str, Any]) -> datetime | None:
    """When the free trial ends, while the subscription is trialing."""
    if stripe_data.get("status") != "trialing" or not stripe_data.get("trial_end"):
        return None
    return datetime.fromtimestamp(int(stripe_data["trial_end"]), UTC)
