"""What a stored Stripe event is about, and how urgently a person waits for it.

Both are read from the event's payload, which is safe here: they only decide *when* and *with
which read* an event is applied, never what the state is (that comes from Stripe's current
state, ``billing.truth``).

- The **lane**: events that admit or welcome someone (a checkout completed, a subscription
  created, the first invoice of a subscription paid) go in the people lane, drained before bulk
  renewal traffic; staff replays join it too (``billing.admin``).
- The **subject**: the Stripe object whose current state settles the event. Events about one
  subject are applied together with one read of it (``billing.drain``). A subscription is the
  subject of its own events and of its invoices' events, so a renewal's five events (the
  subscription updated; the invoice created, finalized, paid, payment succeeded) cost one read.
  Events with no subject (deletions, other object types) are applied one by one as dj-stripe
  mirrors them.
"""

from __future__ import annotations

from typing import Any

from billing.models import StripeEventInbox
from billing.truth import invoice_subscription_id

Lane = StripeEventInbox.Lane

SUBSCRIPTION = "subscription"

_WELCOMING_TYPES = frozenset({"checkout.session.completed", "customer.subscription.created"})
_FIRST_PAYMENT_TYPES = frozenset({"invoice.paid", "invoice.payment_succeeded"})
# Subjects whose events dj-stripe mirrors with one retrieve of the object and our handler
# then reads again: applied once per subject in a batch.
_OBJECT_KINDS = {"charge.dispute.": "dispute", "charge.": "charge", "customer.": "customer"}


def _data_object(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def lane_of(event: dict[str, Any]) -> int:
    event_type = str(event.get("type") or "")
    obj = _data_object(event)
    if event_type in _WELCOMING_TYPES:
        return Lane.PEOPLE
    if event_type in _FIRST_PAYMENT_TYPES and obj.get("billing_reason") == "subscription_create":
        return Lane.PEOPLE
    return Lane.BULK


def event_invoice_id(event: dict[str, Any]) -> str:
    """The invoice an ``invoice.*`` event names, or ""."""
    if not str(event.get("type") or "").startswith("invoice."):
        return ""
    return str(_data_object(event).get("id") or "")


def subject_of(event: dict[str, Any]) -> str | None:
    """``"<kind>:<id>"`` of the object whose one read settles this event, or None."""
    event_type = str(event.get("type") or "")
    obj = _data_object(event)
    object_id = str(obj.get("id") or "")
    if not object_id:
        return None
    if event_type.startswith("customer.subscription."):
        # dj-stripe mirrors ``customer.subscription.deleted`` as an update: Stripe keeps the
        # cancelled subscription.
        return f"{SUBSCRIPTION}:{object_id}"
    if event_type.endswith(".deleted"):
        return None
    if event_type.startswith("invoice.") and obj.get("object") == "invoice":
        subscription_id = invoice_subscription_id(obj)
        return f"{SUBSCRIPTION}:{subscription_id}" if subscription_id else None
    for prefix, kind in _OBJECT_KINDS.items():
        if event_type.startswith(prefix) and event_type.count(".") == prefix.count("."):
            return f"{kind}:{object_id}"
    return None
