"""Our reaction to each Stripe event type, after dj-stripe has mirrored the event.

Handlers are thin: they pick the ids out of the event and call services, which re-read the
subscription from Stripe before deciding anything, so an event's payload only says *what* to
look at, never what the state is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from billing import disputes, services
from billing.truth import invoice_subscription_id

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
    handler = HANDLERS.get(str(event.get("type")))
    if handler is None:
        return False
    handler(event["data"]["object"])
    return True
