"""Which Stripe object settles an event, and which events a person waits for."""

from __future__ import annotations

import pytest

from billing.models import StripeEventInbox
from billing.subjects import event_invoice_id, lane_of, subject_of

Lane = StripeEventInbox.Lane


def _event(event_type: str, **obj) -> dict:
    return {"id": "evt_1", "type": event_type, "data": {"object": obj}}


def _invoice(event_type: str, billing_reason: str = "subscription_cycle") -> dict:
    return _event(
        event_type,
        id="in_1",
        object="invoice",
        billing_reason=billing_reason,
        parent={"subscription_details": {"subscription": "sub_1"}},
    )


@pytest.mark.parametrize(
    ("event", "subject"),
    [
        (_event("customer.subscription.updated", id="sub_1"), "subscription:sub_1"),
        (_event("customer.subscription.deleted", id="sub_1"), "subscription:sub_1"),
        (_invoice("invoice.paid"), "subscription:sub_1"),
        (_invoice("invoice.finalized"), "subscription:sub_1"),
        (_event("invoice.paid", id="in_2", object="invoice"), None),  # not a subscription's
        (_invoice("invoice.deleted"), None),
        (_event("invoice.upcoming", object="invoice"), None),  # no id: nothing to read
        (_event("charge.dispute.created", id="dp_1"), "dispute:dp_1"),
        (_event("charge.dispute.closed", id="dp_1"), "dispute:dp_1"),
        (_event("charge.refunded", id="ch_1"), "charge:ch_1"),
        (_event("customer.updated", id="cus_1"), "customer:cus_1"),
        (_event("customer.deleted", id="cus_1"), None),
        (_event("customer.tax_id.created", id="txi_1"), None),
        (_event("checkout.session.completed", id="cs_1"), None),
        (_event("price.updated", id="price_1"), None),
        ({"id": "evt_1", "type": "customer.updated", "data": "garbage"}, None),
    ],
)
def test_the_subject_of_an_event(event, subject):
    assert subject_of(event) == subject


@pytest.mark.parametrize(
    ("event", "lane"),
    [
        (_event("checkout.session.completed", id="cs_1"), Lane.PEOPLE),
        (_event("customer.subscription.created", id="sub_1"), Lane.PEOPLE),
        (_invoice("invoice.paid", "subscription_create"), Lane.PEOPLE),
        (_invoice("invoice.payment_succeeded", "subscription_create"), Lane.PEOPLE),
        (_invoice("invoice.paid"), Lane.BULK),
        (_invoice("invoice.finalized", "subscription_create"), Lane.BULK),
        (_event("customer.subscription.updated", id="sub_1"), Lane.BULK),
        ({"id": "evt_1", "type": 7, "data": None}, Lane.BULK),
    ],
)
def test_the_lane_of_an_event(event, lane):
    assert lane_of(event) == lane


def test_only_invoice_events_name_an_invoice():
    assert event_invoice_id(_invoice("invoice.paid")) == "in_1"
    assert event_invoice_id(_event("customer.subscription.updated", id="sub_1")) == ""
