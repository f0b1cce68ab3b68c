"""Reads for member pages and the team lists: invoices and seats claimed (the billing summary
is `billing.selectors`, the plans on sale `billing.catalogue`).

Billing state is read from dj-stripe's mirror by **subscription id** (never by customer: one
customer may hold an individual subscription and a company one).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet
from djstripe.models import Invoice

from members.models import Member, SeatTier, Team
from ops.money import format_amount


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
            "amount": format_amount(
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
