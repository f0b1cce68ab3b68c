"""Stripe's current state of a subscription's invoices, read afresh.

A failure episode is decided from this, never from the event that prompted the look: Stripe
does not order events, retries late ones for days and may send one change twice, and
operators replay stored events. The webhook handlers (``billing.services``) and the billing
tick (``billing.lifecycle``) both ask here before they open, settle or act on an episode.
"""

from __future__ import annotations

from typing import Any

import stripe

from billing.models import FailureEpisode


def invoice_subscription_id(invoice: dict[str, Any]) -> str:
    """The subscription an invoice bills (``parent.subscription_details`` since 2025 APIs)."""
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    if details.get("subscription"):
        return str(details["subscription"])
    for line in (invoice.get("lines") or {}).get("data") or []:
        item_details = (line.get("parent") or {}).get("subscription_item_details") or {}
        if item_details.get("subscription"):
            return str(item_details["subscription"])
    legacy = invoice.get("subscription")
    return str(legacy.get("id") if isinstance(legacy, dict) else legacy or "")


FAILING_STATUSES = frozenset({"past_due", "unpaid"})
# A subscription in one of these is over: it bills and entitles nobody again.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})


# dj-stripe mirrors an invoice's discounts as objects (as its own retrieve expands them); a
# read to be mirrored asks for them so.
INVOICE_EXPAND = ("discounts",)


def invoice_read(invoice_id: str) -> dict[str, Any]:
    """Re-read an invoice from Stripe; an event's copy only says which invoice to look at."""
    return stripe.Invoice.retrieve(invoice_id, expand=list(INVOICE_EXPAND))


def subscription_read(subscription_id: str) -> dict[str, Any]:
    return stripe.Subscription.retrieve(subscription_id)


def subscription_read_with_latest_invoice(
    subscription_id: str,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One call for a subscription and its latest invoice, as Stripe reports them now.

    The subscription comes back as Stripe sends it unexpanded (``latest_invoice`` an id), so it
    is mirrored and stored the same whichever read produced it.
    """
    subscription = stripe.Subscription.retrieve(
        subscription_id,
        expand=["latest_invoice", *(f"latest_invoice.{path}" for path in INVOICE_EXPAND)],
    )
    latest = subscription.get("latest_invoice")
    if latest is None or isinstance(latest, str):
        return subscription, None
    subscription["latest_invoice"] = str(latest["id"])
    return subscription, latest


def object_id(value: Any) -> str:
    return str(value.get("id") if isinstance(value, dict) else value or "")


def invoice_is_failing(invoice: dict[str, Any], subscription: dict[str, Any]) -> bool:
    """A renewal whose payment failed and is still owed, on a subscription still in dunning."""
    return (
        invoice.get("billing_reason") == "subscription_cycle"
        and invoice.get("status") == "open"
        and bool(invoice.get("attempted"))
        and int(invoice.get("amount_remaining") or 0) > 0
        and invoice_subscription_id(invoice) == str(subscription.get("id") or "")
        and str(subscription.get("status") or "") in FAILING_STATUSES
    )


def episode_paid_invoice(
    *, episode: FailureEpisode, subscription: dict[str, Any]
) -> dict[str, Any] | None:
    """The paid invoice that settles the episode, as Stripe says now, or None.

    The episode's own invoice, or a later invoice of the same subscription (its latest), paid.
    An older paid invoice — an event replayed days later — settles nothing.
    """
    opened_for: dict[str, Any] = {}
    if episode.invoice_id:
        opened_for = invoice_read(episode.invoice_id)
        if opened_for.get("status") == "paid":
            return opened_for
    latest_id = object_id(subscription.get("latest_invoice"))
    if not latest_id or latest_id == episode.invoice_id:
        return None
    latest = invoice_read(latest_id)
    if latest.get("status") != "paid":
        return None
    if opened_for and int(latest.get("created") or 0) < int(opened_for.get("created") or 0):
        return None
    return latest
