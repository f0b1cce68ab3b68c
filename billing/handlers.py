"""Our reaction to each Stripe event type, after dj-stripe has mirrored the event.

Handlers are thin: they pick the ids out of the event and call services, which re-read the
subscription from Stripe before deciding anything, so an event's payload only says *what* to
look at, never what the state is. For the same reason several events about one object are
settled by one application (``billing.drain`` batches them): ``handle_events`` runs each
handler concerned once, ``subscription_events_apply`` applies one read of a subscription to all
of its events and its invoices' events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from djstripe.models import Invoice

from billing import disputes, services
from billing.subjects import event_invoice_id
from billing.truth import invoice_read, invoice_subscription_id

log = structlog.get_logger(__name__)

Handler = Callable[[dict[str, Any]], None]


def _checkout_session_completed(obj: dict[str, Any]) -> None:
    services.checkout_completed(session=obj)


def _subscription_changed(obj: dict[str, Any]) -> None:
    snapshot = services.subscription_sync(subscription_id=str(obj["id"]))
    services.subscription_apply(snapshot=snapshot)
    services.payment_state_converge(snapshot=snapshot)


def _invoice_changed(obj: dict[str, Any]) -> None:
    # Paid or failed, the event only names the invoice: whether an episode opens or closes is
    # decided from the invoice and the subscription as Stripe reports them now.
    subscription_id = invoice_subscription_id(obj)
    if not subscription_id:
        return
    snapshot = services.subscription_sync(subscription_id=subscription_id)
    services.subscription_apply(snapshot=snapshot)
    services.payment_state_converge(snapshot=snapshot, invoice_id=str(obj.get("id") or ""))


def _dispute_changed(obj: dict[str, Any]) -> None:
    disputes.dispute_sync(dispute_id=str(obj["id"]))


def _charge_refunded(obj: dict[str, Any]) -> None:
    disputes.refund_record(charge_id=str(obj["id"]))


def _customer_updated(obj: dict[str, Any]) -> None:
    # The member's login email stays theirs; the Stripe customer is only mirrored.
    services.customer_sync(customer_id=str(obj["id"]))


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _checkout_session_completed,
    "customer.subscription.created": _subscription_changed,
    "customer.subscription.updated": _subscription_changed,
    "customer.subscription.deleted": _subscription_changed,
    "invoice.paid": _invoice_changed,
    "invoice.payment_failed": _invoice_changed,
    "customer.updated": _customer_updated,
    "charge.dispute.created": _dispute_changed,
    "charge.dispute.updated": _dispute_changed,
    "charge.dispute.closed": _dispute_changed,
    "charge.refunded": _charge_refunded,
}


def handle_event(event: dict[str, Any]) -> bool:
    """Apply one event; returns False for types we leave to dj-stripe's mirror alone."""
    return handle_events([event])


def handle_events(events: list[dict[str, Any]]) -> bool:
    """Apply events about one object: each handler concerned runs once, on the object as the
    latest of its events names it. False when every type is left to dj-stripe's mirror."""
    latest: dict[Handler, dict[str, Any]] = {}
    for event in events:
        handler = HANDLERS.get(str(event.get("type")))
        if handler is not None:
            latest[handler] = event["data"]["object"]
    for handler, obj in latest.items():
        handler(obj)
    return bool(latest)


def subscription_events_apply(
    *,
    subscription_id: str,
    events: list[dict[str, Any]],
    subscription: dict[str, Any],
    latest_invoice: dict[str, Any] | None,
) -> list[str]:
    """Apply one fresh read of a subscription to every event about it and its invoices.

    Mirrors the subscription and the invoices the events name (the latest one comes with the
    read), then does once what each handler would have done from the same state: converge
    seats and access, and the failure episode. Returns the invoices mirrored and converged.
    """
    invoices: dict[str, dict[str, Any]] = {}
    if latest_invoice is not None:
        invoices[str(latest_invoice["id"])] = latest_invoice
    for event in events:
        invoice_id = event_invoice_id(event)
        if invoice_id and invoice_id not in invoices:
            invoices[invoice_id] = invoice_read(invoice_id)
    for data in invoices.values():
        Invoice.sync_from_stripe_data(data, api_key=settings.STRIPE_SECRET_KEY)
    snapshot = services.subscription_sync(subscription_id=subscription_id, remote=subscription)

    # Converge from the one read as every handler would: seats and access, and the failure
    # episode for each invoice mirrored (the latest included). Also for events dj-stripe alone
    # used to mirror (an invoice created, finalized): the read may show more than they
    # announce, and once recorded as applied it settles every event created before it.
    services.subscription_apply(snapshot=snapshot)
    for invoice_id in list(invoices) or [""]:
        services.payment_state_converge(snapshot=snapshot, invoice_id=invoice_id)
    return list(invoices)
