"""Entitlement and billing reads.

Stripe is the source of truth, mirrored by dj-stripe's ``Subscription`` rows (whose fields live
in ``stripe_data``). Everything is keyed by **subscription id** — a member's own (individual)
or their team's (seat) — never by customer id: one customer may hold several subscriptions,
and a pending company checkout must never capture its purchaser's individual events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from djstripe.models import Product, Subscription

from billing.models import FailureEpisode
from members.models import Member

ENTITLED_STATUSES = frozenset({"active", "trialing", "past_due"})


def subscription_for(member: Member) -> Subscription | None:
    subscription_id = member.billing_subscription_id
    if not subscription_id:
        return None
    return Subscription.objects.filter(id=subscription_id).first()


def subscription_status(subscription: Subscription | None) -> str:
    if subscription is None:
        return ""
    return str(subscription.stripe_data.get("status") or "")


def status_is_entitled(status: str) -> bool:
    return status in ENTITLED_STATUSES


def open_failure_episode(subscription_id: str) -> FailureEpisode | None:
    if not subscription_id:
        return None
    return FailureEpisode.objects.filter(
        subscription_id=subscription_id, closed_at__isnull=True
    ).first()


def member_in_debtor(member: Member, now: datetime | None = None) -> bool:
    """True while the member's subscription has an open failure episode past its grace end."""
    now = now or timezone.now()
    subscription_id = member.billing_subscription_id
    if not subscription_id:
        return False
    return FailureEpisode.objects.filter(
        subscription_id=subscription_id, closed_at__isnull=True, debtor_at__lte=now
    ).exists()


def member_is_entitled(member: Member, now: datetime | None = None) -> bool:
    """Paid up (active, trialing or past_due) and not in the Debtor phase.

    Admin overrides are deliberately not consulted here: ``expected_role`` honours them, so
    billing and staff intent stay separately visible.
    """
    status = subscription_status(subscription_for(member))
    return status_is_entitled(status) and not member_in_debtor(member, now)


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


def subscription_item_quantities(stripe_data: dict[str, Any]) -> dict[str, int]:
    """Quantity per price id, summed across items."""
    quantities: dict[str, int] = {}
    for item in (stripe_data.get("items") or {}).get("data") or []:
        price = item.get("price") or {}
        price_id = price.get("id") if isinstance(price, dict) else str(price)
        if price_id:
            quantities[price_id] = quantities.get(price_id, 0) + int(item.get("quantity") or 0)
    return quantities


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
    removal_due_at: datetime | None

    @property
    def has_subscription(self) -> bool:
        return bool(self.subscription_id and self.status)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status.replace("_", " ").capitalize())


def member_billing_summary(member: Member, now: datetime | None = None) -> BillingSummary:
    """What the dashboard shows about billing, from the mirrored subscription."""
    now = now or timezone.now()
    subscription = subscription_for(member)
    data = subscription.stripe_data if subscription is not None else {}
    status = subscription_status(subscription)
    episode = open_failure_episode(member.billing_subscription_id)
    in_debtor = bool(episode and episode.debtor_at and episode.debtor_at <= now)
    return BillingSummary(
        subscription_id=member.billing_subscription_id,
        status=status,
        entitled=status_is_entitled(status) and not in_debtor,
        plan_name=_plan_name(data),
        period_end=subscription_period_end(data),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        in_failure=episode is not None,
        grace_ends_at=episode.grace_ends_at if episode else None,
        in_debtor=in_debtor,
        removal_due_at=episode.removal_due_at if episode else None,
    )


def subscription_statuses(subscription_ids: Iterable[str]) -> dict[str, str]:
    """Status per subscription id in one query (reconciliation, bulk pages)."""
    ids = [sid for sid in set(subscription_ids) if sid]
    return {
        sid: str(data.get("status") or "")
        for sid, data in Subscription.objects.filter(id__in=ids).values_list("id", "stripe_data")
    }


def debtor_subscription_ids(subscription_ids: Iterable[str], now: datetime) -> set[str]:
    ids = [sid for sid in set(subscription_ids) if sid]
    return set(
        FailureEpisode.objects.filter(
            subscription_id__in=ids, closed_at__isnull=True, debtor_at__lte=now
        ).values_list("subscription_id", flat=True)
    )


def entitled_member_ids(members: Iterable[Member], now: datetime | None = None) -> set[int]:
    """Ids of the given members who are entitled, with two queries for any number of them.

    Callers pass members loaded with ``select_related("team")``.
    """
    now = now or timezone.now()
    members = list(members)
    by_member = {m.pk: m.billing_subscription_id for m in members}
    statuses = subscription_statuses(by_member.values())
    debtors = debtor_subscription_ids(by_member.values(), now)
    return {
        pk
        for pk, sid in by_member.items()
        if sid and status_is_entitled(statuses.get(sid, "")) and sid not in debtors
    }
