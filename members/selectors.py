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


class InvoiceRows(list[dict[str, Any]]):
    """The invoices a member sees, with the columns worth showing for them all: a discount
    column when one of them had a discount, a tax column when one of them was taxed; the
    subtotal only beside either (alone it would repeat the total)."""

    @property
    def shows_discount(self) -> bool:
        return any(row["discount"] for row in self)

    @property
    def shows_tax(self) -> bool:
        return any(row["taxed"] for row in self)

    @property
    def shows_breakdown(self) -> bool:
        return self.shows_discount or self.shows_tax


def invoice_tax(data: dict[str, Any]) -> tuple[int | None, bool]:
    """The tax on a Stripe invoice and whether the prices included it; ``None`` when no tax
    was calculated for it (``0`` when it was, and came to nothing: a country where the
    account does not collect).

    ``total_taxes[]`` since the 2025 API versions; ``total_tax_amounts[]`` and ``tax`` on
    invoices mirrored under older ones.
    """
    for field, inclusive in (("total_taxes", "tax_behavior"), ("total_tax_amounts", "inclusive")):
        entries = [entry for entry in data.get(field) or [] if isinstance(entry, dict)]
        if entries:
            included = all(entry.get(inclusive) in ("inclusive", True) for entry in entries)
            return sum(int(entry.get("amount") or 0) for entry in entries), included
    if data.get("tax") is not None:
        return int(data["tax"]), False
    return None, False


def invoice_row(invoice_id: str, created: Any, data: dict[str, Any]) -> dict[str, Any]:
    """One invoice as the billing page shows it, amounts formatted for its currency:
    ``subtotal`` (before discounts), ``discount`` (negative, "" without one), ``tax`` ("" when
    none was calculated), ``tax_included`` (the prices included it) and ``amount`` (the
    total, what the member pays)."""
    currency = data.get("currency") or "usd"
    discount = sum(
        int(entry.get("amount") or 0)
        for entry in data.get("total_discount_amounts") or []
        if isinstance(entry, dict)
    )
    tax, included = invoice_tax(data)
    return {
        "number": data.get("number") or invoice_id,
        "created": created,
        "subtotal": format_amount(data.get("subtotal"), currency),
        "discount": format_amount(-discount, currency) if discount else "",
        "tax": format_amount(tax, currency),
        "tax_included": included,
        "taxed": bool(tax),
        "amount": format_amount(data.get("total"), currency),
        "status": data.get("status") or "",
        "url": data.get("hosted_invoice_url") or "",
    }


def member_invoices(*, member: Member, limit: int = 10) -> InvoiceRows:
    """The latest invoices of the member's subscription, newest first (see
    :func:`invoice_row`)."""
    subscription_id = member.billing_subscription_id
    if not subscription_id:
        return InvoiceRows()
    rows = Invoice.objects.filter(
        Q(subscription_id=subscription_id)
        | Q(stripe_data__parent__subscription_details__subscription=subscription_id)
    ).order_by("-created")[:limit]
    return InvoiceRows(invoice_row(row.id, row.created, row.stripe_data) for row in rows)


def member_can_manage_billing(*, member: Member) -> bool:
    """Individuals and team owners manage billing; other seats see who does."""
    return member.team_id is None or member.seat_tier == SeatTier.OWNER


def with_seats_claimed(queryset: QuerySet[Team]) -> QuerySet[Team]:
    """Annotate the seats claimed per tier: ``owners_used`` and ``team_used``."""
    return queryset.annotate(
        owners_used=Count("members", filter=Q(members__seat_tier=SeatTier.OWNER)),
        team_used=Count("members", filter=Q(members__seat_tier=SeatTier.TEAM)),
    )
