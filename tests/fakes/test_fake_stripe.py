"""The fake Stripe server, driven over real HTTP by stripe-python (and dj-stripe).

These tests pin the contract the rest of the suite and sandbox mode rely on: Stripe's wire
format at the pinned API version, the hosted Checkout and portal pages, lifecycle controls
(renew / fail / recover / cancel), signed webhooks with their documented misbehaviours, fault
injection and the request log.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe

from fakes.stripe import (
    INDIVIDUAL_PRICE_ID,
    OWNER_SEAT_PRICE_ID,
    TEAM_SEAT_PRICE_ID,
    FakeStripeServer,
    sign_payload,
)
from fakes.stripe.__main__ import parse_args
from fakes.stripe.errors import StripeError as FakeStripeError
from fakes.stripe.forms import parse_query
from tests.fakes.latency import check_latency

API_KEY = "sk_test_fake_suite"
SECRET = "whsec_fake_suite"
REPO = Path(__file__).resolve().parents[2]


# -- fixtures -------------------------------------------------------------------------------


class Receiver:
    """A tiny webhook endpoint: records raw bodies and headers, answers scripted statuses."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        self.statuses: list[int] = []  # consumed first, then 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.put(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/stripe/webhook/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self, count: int, timeout: float = 5.0) -> list[tuple[dict[str, str], bytes]]:
        return [self.received.get(timeout=timeout) for _ in range(count)]

    def events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.take(count, timeout)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def srv() -> Iterator[FakeStripeServer]:
    with FakeStripeServer(webhook_secret=SECRET) as server:
        yield server


@pytest.fixture
def client(srv: FakeStripeServer) -> stripe.StripeClient:
    # StripeClient takes the fake's address per client; no global state to undo.
    return stripe.StripeClient(API_KEY, base_addresses={"api": srv.url}, max_network_retries=0)


@pytest.fixture
def receiver(srv: FakeStripeServer) -> Iterator[Receiver]:
    rec = Receiver()
    srv.set_webhook(rec.url, SECRET)
    srv.configure_webhooks(backoff=0.05)
    yield rec
    rec.close()


def buy(
    client: stripe.StripeClient,
    items: list[tuple[str, int]] | None = None,
    **extra: Any,
) -> tuple[stripe.checkout.Session, requests.Response]:
    """Create a Checkout Session and pay it through the hosted page, as a browser would."""
    customer = client.v1.customers.create(params={"email": "ada@example.test"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "client_reference_id": "member-7",
            "line_items": [
                {"price": price, "quantity": quantity}
                for price, quantity in (items or [(INDIVIDUAL_PRICE_ID, 1)])
            ],
            "metadata": {"member_id": "7"},
            "subscription_data": {"metadata": {"member_id": "7"}},
            "success_url": "https://gateway.test/billing/success?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://gateway.test/billing/cancelled",
            **extra,
        }
    )
    response = requests.post(
        session.url, data={"card_number": "4242 4242 4242 4242"}, allow_redirects=False
    )
    return session, response


def last_object(srv: FakeStripeServer, event_type: str) -> dict[str, Any]:
    """``data.object`` of the latest event of this type."""
    return srv.state.events_of(event_type)[-1]["data"]["object"]


def subscribe(client: stripe.StripeClient, items: list[tuple[str, int]] | None = None) -> str:
    session, response = buy(client, items)
    assert response.status_code == 303
    return client.v1.checkout.sessions.retrieve(session.id).subscription


# -- request encoding -------------------------------------------------------------------------


def test_form_parser_decodes_stripe_nested_keys() -> None:
    parsed = parse_query(
        "line_items[0][price]=price_a&line_items[0][quantity]=2&line_items[1][price]=price_b"
        "&expand[]=customer&expand[]=line_items&metadata[gone]=&items[0][deleted]=true"
    )
    assert parsed == {
        "line_items": [{"price": "price_a", "quantity": "2"}, {"price": "price_b"}],
        "expand": ["customer", "line_items"],
        "metadata": {"gone": ""},
        "items": [{"deleted": "true"}],
    }


def test_sign_payload_is_verified_by_stripe_python() -> None:
    body = b'{"id": "evt_1"}'
    header = sign_payload(body, SECRET)
    assert stripe.WebhookSignature.verify_header(body.decode(), header, SECRET, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body.decode(), header, "whsec_other", tolerance=300)
    stale = sign_payload(body, SECRET, timestamp=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body.decode(), stale, SECRET, tolerance=300)


# -- auth, errors, account ----------------------------------------------------------------


def test_api_requires_a_secret_key(srv: FakeStripeServer) -> None:
    anonymous = requests.get(f"{srv.url}/v1/customers")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "invalid_request_error"
    bad = stripe.StripeClient("pk_test_public", base_addresses={"api": srv.url})
    with pytest.raises(stripe.AuthenticationError):
        bad.v1.customers.list()


def test_livemode_follows_the_key_prefix(srv: FakeStripeServer) -> None:
    live = stripe.StripeClient("sk_live_x", base_addresses={"api": srv.url})
    test = stripe.StripeClient("sk_test_x", base_addresses={"api": srv.url})
    assert live.v1.customers.create(params={"email": "l@example.test"}).livemode is True
    assert test.v1.customers.create(params={"email": "t@example.test"}).livemode is False


def test_missing_objects_and_unknown_routes_are_stripe_errors(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscriptions.retrieve("sub_missing")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"
    assert missing.value.param == "id"
    assert "No such subscription: 'sub_missing'" in str(missing.value)

    unknown = requests.get(f"{srv.url}/v1/widgets", headers={"Authorization": f"Bearer {API_KEY}"})
    assert unknown.status_code == 404
    error = unknown.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "resource_missing"
    assert "Unrecognized request URL (GET: /v1/widgets)" in error["message"]

    with pytest.raises(stripe.InvalidRequestError) as bad_price:
        client.v1.checkout.sessions.create(
            params={"mode": "subscription", "line_items": [{"price": "price_nope"}]}
        )
    assert bad_price.value.http_status == 404
    assert bad_price.value.param == "line_items[0][price]"


def test_account_and_catalogue(client: stripe.StripeClient) -> None:
    account = client.v1.accounts.retrieve_current()
    assert account.id.startswith("acct_")
    price = client.v1.prices.retrieve(INDIVIDUAL_PRICE_ID, params={"expand": ["product"]})
    assert (price.unit_amount, price.currency, price.recurring.interval) == (9900, "usd", "month")
    assert price.product.name == "Individual membership"
    ids = {p.id for p in client.v1.prices.list(params={"limit": 100}).data}
    assert {INDIVIDUAL_PRICE_ID, OWNER_SEAT_PRICE_ID, TEAM_SEAT_PRICE_ID} <= ids
    assert client.v1.products.features.list(price.product.id).data == []


# -- customers ------------------------------------------------------------------------------


def test_customer_create_retrieve_update_list(client: stripe.StripeClient) -> None:
    created = client.v1.customers.create(
        params={"email": "ada@example.test", "name": "Ada", "metadata": {"member_id": "1"}}
    )
    assert created.id.startswith("cus_")
    assert created.object == "customer"
    assert created.metadata.to_dict() == {"member_id": "1"}
    assert created.invoice_settings.default_payment_method is None

    updated = client.v1.customers.update(
        created.id, params={"name": "Ada L.", "metadata": {"member_id": "", "team": "t1"}}
    )
    assert updated.name == "Ada L."
    assert updated.metadata.to_dict() == {"team": "t1"}  # "" deletes a key, as on Stripe
    assert client.v1.customers.retrieve(created.id).name == "Ada L."

    listed = client.v1.customers.list(params={"email": "ada@example.test"})
    assert [c.id for c in listed.data] == [created.id]


def test_deleting_a_customer_cancels_its_subscriptions(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    sub_id = subscribe(client)
    customer_id = client.v1.subscriptions.retrieve(sub_id).customer
    deleted = client.v1.customers.delete(customer_id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(customer_id).deleted is True
    assert client.v1.subscriptions.retrieve(sub_id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(customer_id, params={"name": "Gone"})


# -- checkout -----------------------------------------------------------------------------


def test_hosted_checkout_page_shows_the_order(client: stripe.StripeClient) -> None:
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer_email": "new@example.test",
            "line_items": [
                {"price": OWNER_SEAT_PRICE_ID, "quantity": 1},
                {"price": TEAM_SEAT_PRICE_ID, "quantity": 3},
            ],
            "custom_fields": [
                {
                    "key": "company",
                    "label": {"type": "custom", "custom": "Company name"},
                    "type": "text",
                }
            ],
            "success_url": "https://gateway.test/ok",
            "cancel_url": "https://gateway.test/cancelled",
        }
    )
    assert session.id.startswith("cs_test_")
    assert session.status == "open"
    assert session.amount_total == 9900 + 3 * 4900
    page = requests.get(session.url)
    assert page.status_code == 200
    html = page.text
    assert "<script" not in html
    assert "Owner seat" in html and "Team seat" in html
    assert "$246.00" in html  # 99 + 3 × 49
    assert '<label for="cf-company">Company name</label>' in html
    assert '<button type="submit">Pay</button>' in html
    assert '<a href="https://gateway.test/cancelled">Cancel</a>' in html

    lines = client.v1.checkout.sessions.line_items.list(session.id)
    assert [(li.price.id, li.quantity, li.amount_total) for li in lines.data] == [
        (OWNER_SEAT_PRICE_ID, 1, 9900),
        (TEAM_SEAT_PRICE_ID, 3, 14700),
    ]


def test_paying_checkout_creates_an_active_subscription_and_paid_invoice(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    session, response = buy(client, [(OWNER_SEAT_PRICE_ID, 1), (TEAM_SEAT_PRICE_ID, 2)])
    assert response.status_code == 303
    assert response.headers["Location"] == (
        f"https://gateway.test/billing/success?session={session.id}"
    )

    done = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["line_items", "subscription"]}
    )
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert done.client_reference_id == "member-7"
    assert done.metadata.to_dict() == {"member_id": "7"}
    assert len(done.line_items.data) == 2
    sub = done.subscription
    assert sub.status == "active"
    assert sub.customer == done.customer
    assert sub.metadata.to_dict() == {"member_id": "7"}
    items = {item.price.id: item for item in sub["items"].data}
    assert items[OWNER_SEAT_PRICE_ID].quantity == 1
    assert items[TEAM_SEAT_PRICE_ID].quantity == 2
    for item in items.values():
        assert item.id.startswith("si_")
        assert item.current_period_end > item.current_period_start
    assert "current_period_end" not in sub  # periods live on the items at this API version

    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.id.startswith("in_")
    assert invoice.billing_reason == "subscription_create"
    assert invoice.status == "paid"
    assert invoice.amount_paid == invoice.amount_due == 9900 + 2 * 4900
    assert invoice.parent.subscription_details.subscription == sub.id
    assert "subscription" not in invoice
    assert invoice.hosted_invoice_url.startswith(srv.url)
    assert requests.get(invoice.invoice_pdf).content.startswith(b"%PDF")
    assert {line.pricing.price_details.price for line in invoice.lines.data} == set(items)

    pm = client.v1.payment_methods.retrieve(sub.default_payment_method)
    assert (pm.card.last4, pm.customer) == ("4242", done.customer)

    types = [e["type"] for e in srv.state.events_of()]
    assert types[types.index("customer.subscription.created") :] == [
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "checkout.session.completed",
    ]
    # The hosted page does not take a second payment.
    again = requests.post(session.url, data={}, allow_redirects=False)
    assert again.status_code == 400


def test_checkout_decline_keeps_the_session_open(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": INDIVIDUAL_PRICE_ID, "quantity": 1}],
            "success_url": "https://gateway.test/ok",
        }
    )
    declined = requests.post(
        session.url, data={"email": "x@example.test", "card_number": "4000000000000002"}
    )
    assert declined.status_code == 402
    assert 'role="alert">Your card was declined.' in declined.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert srv.state.events_of("checkout.session.completed") == []

    paid = requests.post(session.url, data={"email": "x@example.test"}, allow_redirects=False)
    assert paid.status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["customer"]})
    assert done.customer.email == "x@example.test"  # a customer was created at payment


def test_checkout_rejects_zero_quantity(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "line_items": [{"price": TEAM_SEAT_PRICE_ID, "quantity": 0}],
            }
        )
    assert error.value.param == "line_items[0][quantity]"


# -- subscriptions: listing ---------------------------------------------------------------


def test_subscription_list_paginates_with_status_all(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    ids = srv.state.seed(250, price=TEAM_SEAT_PRICE_ID, metadata_key="member_id")
    srv.state.cancel(ids[0])

    first = client.v1.subscriptions.list(params={"status": "all", "limit": 100})
    second = client.v1.subscriptions.list(
        params={"status": "all", "limit": 100, "starting_after": first.data[-1].id}
    )
    third = client.v1.subscriptions.list(
        params={"status": "all", "limit": 100, "starting_after": second.data[-1].id}
    )
    assert [len(first.data), len(second.data), len(third.data)] == [100, 100, 50]
    assert [first.has_more, second.has_more, third.has_more] == [True, True, False]
    assert [s.id for s in first.data + second.data + third.data] == ids[::-1]  # newest first
    assert third.data[-1].status == "canceled"

    # ending_before walks back towards newer objects, still newest first within the page.
    back = client.v1.subscriptions.list(
        params={"status": "all", "limit": 100, "ending_before": second.data[0].id}
    )
    assert [s.id for s in back.data] == [s.id for s in first.data]
    assert back.has_more is False

    everything = client.v1.subscriptions.list(params={"status": "all", "limit": 100})
    assert len(list(everything.auto_paging_iter())) == 250
    # Without a status filter Stripe hides canceled subscriptions.
    default = client.v1.subscriptions.list(
        params={"limit": 100, "starting_after": second.data[-1].id}
    )
    assert len(default.data) == 49
    assert third.data[0].metadata["member_id"] == "49"

    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.list(params={"limit": 101})


def test_subscription_list_filters_by_customer_and_price(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    team = subscribe(client, [(OWNER_SEAT_PRICE_ID, 1), (TEAM_SEAT_PRICE_ID, 2)])
    solo = subscribe(client)
    customer = client.v1.subscriptions.retrieve(solo).customer
    by_customer = client.v1.subscriptions.list(params={"customer": customer})
    assert [s.id for s in by_customer.data] == [solo]
    by_price = client.v1.subscriptions.list(params={"price": TEAM_SEAT_PRICE_ID})
    assert [s.id for s in by_price.data] == [team]


def test_seeding_100k_is_fast_and_deep_pages_stay_cheap(srv: FakeStripeServer) -> None:
    started = time.monotonic()
    seeded = requests.post(
        f"{srv.url}/_control/seed",
        json={"count": 100_000, "price": INDIVIDUAL_PRICE_ID, "metadata_key": "member_id"},
    ).json()
    assert seeded["created"] == 100_000
    assert time.monotonic() - started < 20

    headers = {"Authorization": f"Bearer {API_KEY}"}
    started = time.monotonic()
    page = requests.get(
        f"{srv.url}/v1/subscriptions",
        params={"status": "all", "limit": 100, "starting_after": seeded["first"]},
        headers=headers,
    ).json()
    near_end = requests.get(
        f"{srv.url}/v1/subscriptions",
        params={"status": "all", "limit": 100, "ending_before": seeded["first"]},
        headers=headers,
    ).json()
    assert time.monotonic() - started < 2  # cursor lookup by index, not a scan
    assert page["data"] == [] and page["has_more"] is False  # the oldest has nothing after it
    assert len(near_end["data"]) == 100 and near_end["has_more"] is True


# -- subscriptions: lifecycle --------------------------------------------------------------


def test_renew_fail_and_recover(srv: FakeStripeServer, client: stripe.StripeClient) -> None:
    sub_id = subscribe(client)
    start = client.v1.subscriptions.retrieve(sub_id)["items"].data[0]

    renewed = srv.state.renew(sub_id)
    invoice = renewed["invoice"]
    assert (invoice["billing_reason"], invoice["status"]) == ("subscription_cycle", "paid")
    item = client.v1.subscriptions.retrieve(sub_id)["items"].data[0]
    assert item.current_period_start == start.current_period_end
    assert item.current_period_end > item.current_period_start

    failed = srv.state.fail_renewal(sub_id)["invoice"]
    assert (failed["billing_reason"], failed["status"]) == ("subscription_cycle", "open")
    assert failed["attempt_count"] == 1
    sub = client.v1.subscriptions.retrieve(sub_id)
    assert (sub.status, sub.latest_invoice) == ("past_due", failed["id"])

    # A second failure is Stripe's retry: the same invoice fails again.
    again = srv.state.fail_renewal(sub_id)["invoice"]
    assert again["id"] == failed["id"] and again["attempt_count"] == 2
    failures = srv.state.events_of("invoice.payment_failed")
    assert [e["data"]["object"]["id"] for e in failures] == [failed["id"], failed["id"]]
    assert all(e["data"]["object"]["billing_reason"] == "subscription_cycle" for e in failures)

    srv.state.recover(sub_id)
    assert client.v1.invoices.retrieve(failed["id"]).status == "paid"
    assert client.v1.subscriptions.retrieve(sub_id).status == "active"

    updates = srv.state.events_of("customer.subscription.updated")
    statuses = [
        (e["data"]["previous_attributes"].get("status"), e["data"]["object"]["status"])
        for e in updates
    ]
    assert (statuses[-2], statuses[-1]) == (("active", "past_due"), ("past_due", "active"))
    tail = [e["type"] for e in srv.state.events_of()][-3:]
    assert tail == ["invoice.paid", "invoice.payment_succeeded", "customer.subscription.updated"]

    invoices = client.v1.invoices.list(params={"subscription": sub_id})
    assert [i.billing_reason for i in invoices.data] == [
        "subscription_cycle",
        "subscription_cycle",
        "subscription_create",
    ]
    lines = client.v1.invoices.line_items.list(failed["id"])
    assert lines.data[0].period.start == item.current_period_end


def test_cancel_at_period_end_then_period_end_cancels(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    sub_id = subscribe(client)
    sub = client.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    assert sub.cancel_at_period_end is True
    assert sub.cancel_at == sub["items"].data[0].current_period_end
    assert sub.status == "active"
    update = srv.state.events_of("customer.subscription.updated")[-1]
    assert update["data"]["previous_attributes"]["cancel_at_period_end"] is False

    srv.state.renew(sub_id)  # the period ends
    ended = client.v1.subscriptions.retrieve(sub_id)
    assert ended.status == "canceled"
    assert last_object(srv, "customer.subscription.deleted")["id"] == sub_id


def test_cancel_now_and_forced_statuses(srv: FakeStripeServer, client: stripe.StripeClient) -> None:
    unpaid = subscribe(client)
    srv.state.set_status(unpaid, "unpaid")
    assert client.v1.subscriptions.retrieve(unpaid).status == "unpaid"
    event = srv.state.events_of("customer.subscription.updated")[-1]
    assert event["data"]["previous_attributes"] == {"status": "active"}

    doomed = subscribe(client)
    canceled = client.v1.subscriptions.cancel(doomed)
    assert canceled.status == "canceled"
    assert canceled.ended_at is not None
    assert last_object(srv, "customer.subscription.deleted")["id"] == doomed
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.cancel(doomed)


def test_adding_seats_with_always_invoice_prorates_and_pays(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    sub_id = subscribe(client, [(OWNER_SEAT_PRICE_ID, 1)])
    owner_item = client.v1.subscriptions.retrieve(sub_id)["items"].data[0]
    before = len(srv.state.events_of())

    sub = client.v1.subscriptions.update(
        sub_id,
        params={
            "items": [
                {"id": owner_item.id, "quantity": 2},
                {"price": TEAM_SEAT_PRICE_ID, "quantity": 3},
            ],
            "proration_behavior": "always_invoice",
        },
    )
    quantities = {item.price.id: item.quantity for item in sub["items"].data}
    assert quantities == {OWNER_SEAT_PRICE_ID: 2, TEAM_SEAT_PRICE_ID: 3}
    team_item = next(i for i in sub["items"].data if i.price.id == TEAM_SEAT_PRICE_ID)
    assert team_item.current_period_end == owner_item.current_period_end  # one billing cycle

    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.billing_reason == "subscription_update"
    assert invoice.status == "paid"
    # Bought just now: almost the whole period is left, so close to the full price.
    full = 9900 + 3 * 4900
    assert 0.95 * full <= invoice.amount_paid <= full
    assert all(line.parent.invoice_item_details.proration for line in invoice.lines.data)
    types = [e["type"] for e in srv.state.events_of()[before:]]
    assert types[0] == "customer.subscription.updated"
    assert types[-4:] == [
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    assert types.count("invoiceitem.created") == 2

    # Removing an item is allowed; removing every item is not.
    sub = client.v1.subscriptions.update(
        sub_id,
        params={"items": [{"id": team_item.id, "deleted": True}], "proration_behavior": "none"},
    )
    assert [i.price.id for i in sub["items"].data] == [OWNER_SEAT_PRICE_ID]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(
            sub_id, params={"items": [{"id": owner_item.id, "deleted": True}]}
        )


def test_declined_seat_payment(srv: FakeStripeServer, client: stripe.StripeClient) -> None:
    sub_id = subscribe(client, [(OWNER_SEAT_PRICE_ID, 1)])
    add_seats = {
        "items": [{"price": TEAM_SEAT_PRICE_ID, "quantity": 2}],
        "proration_behavior": "always_invoice",
    }

    # error_if_incomplete: a 402 and no change at all.
    requests.post(f"{srv.url}/_control/payments/decline", json={"count": 1})
    with pytest.raises(stripe.CardError) as declined:
        client.v1.subscriptions.update(
            sub_id, params={**add_seats, "payment_behavior": "error_if_incomplete"}
        )
    assert (declined.value.http_status, declined.value.code) == (402, "card_declined")
    assert len(client.v1.subscriptions.retrieve(sub_id)["items"].data) == 1

    # The default (allow_incomplete): the seats are added, the invoice stays open, past_due.
    srv.state.decline_payments(1)
    sub = client.v1.subscriptions.update(sub_id, params=add_seats)
    assert (sub.status, len(sub["items"].data)) == ("past_due", 2)
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (invoice.billing_reason, invoice.status) == ("subscription_update", "open")
    assert last_object(srv, "invoice.payment_failed")["id"] == invoice.id

    paid = client.v1.invoices.pay(invoice.id)
    assert paid.status == "paid"
    assert client.v1.subscriptions.retrieve(sub_id).status == "active"


def test_subscription_item_endpoints(srv: FakeStripeServer, client: stripe.StripeClient) -> None:
    sub_id = subscribe(client, [(OWNER_SEAT_PRICE_ID, 1)])
    added = client.v1.subscription_items.create(
        params={
            "subscription": sub_id,
            "price": TEAM_SEAT_PRICE_ID,
            "quantity": 2,
            "proration_behavior": "create_prorations",
        }
    )
    assert (added.price.id, added.quantity, added.subscription) == (TEAM_SEAT_PRICE_ID, 2, sub_id)
    changed = client.v1.subscription_items.update(added.id, params={"quantity": 4})
    assert changed.quantity == 4
    listed = client.v1.subscription_items.list(params={"subscription": sub_id})
    assert {i.id for i in listed.data} == {
        added.id,
        client.v1.subscriptions.retrieve(sub_id)["items"].data[0].id,
    }

    # create_prorations leaves pending invoice items that the next renewal bills.
    renewal = srv.state.renew(sub_id)["invoice"]
    prorations = [
        line
        for line in renewal["lines"]["data"]
        if line["parent"]["type"] == "invoice_item_details"
    ]
    assert len(prorations) == 2
    assert renewal["total"] == 9900 + 4 * 4900 + sum(line["amount"] for line in prorations)


# -- billing portal -----------------------------------------------------------------------


def test_portal_update_card_recovers_a_past_due_subscription(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    sub_id = subscribe(client)
    customer = client.v1.subscriptions.retrieve(sub_id).customer
    failed = srv.state.fail_renewal(sub_id)["invoice"]

    portal = client.v1.billing_portal.sessions.create(
        params={"customer": customer, "return_url": "https://gateway.test/dashboard/"}
    )
    assert portal.id.startswith("bps_")
    page = requests.get(portal.url)
    assert page.status_code == 200
    assert "Your last payment failed" in page.text
    assert '<a href="https://gateway.test/dashboard/">' in page.text
    assert "<script" not in page.text

    updated = requests.post(
        f"{portal.url}/card", data={"card_number": "5555 5555 5555 4444"}, allow_redirects=False
    )
    assert updated.status_code == 303
    assert client.v1.invoices.retrieve(failed["id"]).status == "paid"
    sub = client.v1.subscriptions.retrieve(sub_id)
    assert sub.status == "active"
    assert client.v1.payment_methods.retrieve(sub.default_payment_method).card.last4 == "4444"
    assert client.v1.customers.retrieve(customer).invoice_settings.default_payment_method == (
        sub.default_payment_method
    )


def test_portal_cancel_at_period_end_and_undo(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    sub_id = subscribe(client)
    customer = client.v1.subscriptions.retrieve(sub_id).customer
    portal = client.v1.billing_portal.sessions.create(params={"customer": customer})
    cancel = requests.post(f"{portal.url}/subscriptions/{sub_id}/cancel", allow_redirects=False)
    assert cancel.status_code == 303
    assert client.v1.subscriptions.retrieve(sub_id).cancel_at_period_end is True
    assert "Don&#x27;t cancel" in requests.get(portal.url).text
    requests.post(f"{portal.url}/subscriptions/{sub_id}/reactivate")
    assert client.v1.subscriptions.retrieve(sub_id).cancel_at_period_end is False


# -- webhooks -----------------------------------------------------------------------------


def test_webhooks_are_signed_and_delivered(
    srv: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    client.v1.customers.create(params={"email": "hook@example.test"})
    [(headers, body)] = receiver.take(1)
    assert stripe.WebhookSignature.verify_header(
        body.decode(), headers["stripe-signature"], SECRET, tolerance=300
    )
    event = stripe.Webhook.construct_event(body.decode(), headers["stripe-signature"], SECRET)
    assert event.type == "customer.created"
    assert event.api_version == stripe._api_version._ApiVersion.CURRENT
    assert event.data.object.email == "hook@example.test"
    assert event["request"]["id"].startswith("req_")
    assert headers["content-type"].startswith("application/json")

    [delivery] = srv.wait_for_deliveries(1)
    assert (delivery["status"], delivery["last_status_code"], delivery["attempt_count"]) == (
        "succeeded",
        200,
        1,
    )
    assert client.v1.events.retrieve(event.id).pending_webhooks == 0


def test_webhook_retries_failed_deliveries_with_a_fresh_signature(
    srv: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    client.v1.customers.create(params={"email": "retry@example.test"})
    attempts = receiver.take(3)
    assert len({body for _, body in attempts}) == 1
    [delivery] = srv.wait_for_deliveries(1)
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["status"] == "succeeded"

    srv.configure_webhooks(attempts=2)
    receiver.statuses = [500, 500]
    client.v1.customers.create(params={"email": "gives-up@example.test"})
    receiver.take(2)
    failed = srv.wait_for_deliveries(1, where=lambda d: d["status"] == "failed")
    assert failed[0]["attempt_count"] == 2


def test_webhook_duplicate_and_reverse_options(
    srv: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    srv.configure_webhooks(duplicate=True)
    client.v1.customers.create(params={"email": "dup@example.test"})
    first, second = receiver.events(2)
    assert first["id"] == second["id"]  # the same event, twice

    srv.configure_webhooks(duplicate=False, reverse=True)
    subscribe(client)  # two operations: create the customer, then pay (seven events)
    emitted = [e["type"] for e in srv.state.events_of()][-8:]
    arrived = [e["type"] for e in receiver.events(8)]
    assert arrived[0] == emitted[0] == "customer.created"
    assert arrived[1:] == emitted[1:][::-1]  # each batch newest first
    assert arrived[1] == "checkout.session.completed"


def test_webhook_hold_until_flush(
    srv: FakeStripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    srv.configure_webhooks(hold=True)
    client.v1.customers.create(params={"email": "held@example.test"})
    time.sleep(0.1)
    assert receiver.received.empty()
    assert [d["status"] for d in srv.deliveries()] == ["held"]
    flushed = requests.post(f"{srv.url}/_control/flush").json()
    assert flushed == {"released": 1}
    assert receiver.events(1)[0]["type"] == "customer.created"


def test_webhook_endpoint_configurable_at_runtime(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    rec = Receiver()
    try:
        config = requests.post(
            f"{srv.url}/_control/webhook",
            json={"url": rec.url, "secret": "whsec_runtime", "backoff": 0.1},
        ).json()
        assert config["endpoints"] == [{"url": rec.url}]
        assert config["options"]["backoff"] == 0.1
        client.v1.customers.create(params={"email": "runtime@example.test"})
        [(headers, body)] = rec.take(1)
        stripe.WebhookSignature.verify_header(
            body.decode(), headers["stripe-signature"], "whsec_runtime", tolerance=300
        )
    finally:
        rec.close()


def test_events_api_lists_and_filters(srv: FakeStripeServer, client: stripe.StripeClient) -> None:
    since = int(time.time())
    sub_id = subscribe(client)
    srv.state.renew(sub_id)
    paid = client.v1.events.list(params={"type": "invoice.paid", "created": {"gte": since}})
    assert [e.data.object.billing_reason for e in paid.data] == [
        "subscription_cycle",
        "subscription_create",
    ]
    wildcard = client.v1.events.list(params={"type": "customer.subscription.*", "limit": 1})
    assert wildcard.data[0].type == "customer.subscription.updated" and wildcard.has_more
    assert client.v1.events.retrieve(paid.data[0].id).id == paid.data[0].id


# -- faults, request log, idempotency, control API -----------------------------------------


def test_fault_injection_fails_then_recovers(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    sub_id = subscribe(client)
    srv.add_fault("/v1/subscriptions", status=500, count=1)
    with pytest.raises(stripe.APIError) as error:
        client.v1.subscriptions.retrieve(sub_id)
    assert error.value.http_status == 500
    assert client.v1.subscriptions.retrieve(sub_id).id == sub_id

    # stripe-python's own retries absorb a transient failure; the log shows both calls.
    retrying = stripe.StripeClient(API_KEY, base_addresses={"api": srv.url}, max_network_retries=2)
    requests.post(
        f"{srv.url}/_control/faults", json={"path_prefix": "/v1/subscriptions", "status": 503}
    )
    srv.clear_requests()
    assert retrying.v1.subscriptions.retrieve(sub_id).id == sub_id
    log = requests.get(f"{srv.url}/_control/requests").json()
    assert [(r["method"], r["path"], r["status"]) for r in log["requests"]] == [
        ("GET", f"/v1/subscriptions/{sub_id}", 503),
        ("GET", f"/v1/subscriptions/{sub_id}", 200),
    ]


def test_latency_delays_every_api_call_side_by_side(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    check_latency(
        f"{srv.url}/_control/latency",
        lambda: requests.get(
            f"{srv.url}/v1/customers", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        ),
    )


def test_latency_is_a_server_setting() -> None:
    """The CLI options and the in-process server take the same setting."""
    args = parse_args(["--latency-ms", "150", "--latency-jitter-ms", "30"])
    assert (args.latency_ms, args.latency_jitter_ms) == (150.0, 30.0)
    with FakeStripeServer(latency_ms=150, latency_jitter_ms=30) as server:
        answer = requests.get(f"{server.url}/_control/latency", timeout=10).json()
    assert answer == {"ms": 150.0, "jitter_ms": 30.0}


def test_request_log_records_queries(srv: FakeStripeServer, client: stripe.StripeClient) -> None:
    client.v1.subscriptions.list(params={"status": "all", "limit": 100})
    [entry] = srv.requests("/v1/subscriptions")
    assert entry["method"] == "GET"
    assert entry["query"] == {"status": "all", "limit": "100"}
    requests.post(f"{srv.url}/_control/requests/clear")
    assert srv.requests() == []


def test_idempotency_key_replays_the_first_response(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    options = {"idempotency_key": "signup-42"}
    first = client.v1.customers.create(params={"email": "once@example.test"}, options=options)
    second = client.v1.customers.create(params={"email": "once@example.test"}, options=options)
    assert first.id == second.id
    assert len(srv.state.events_of("customer.created")) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"email": "other@example.test"}, options=options)


def test_control_api_drives_the_lifecycle_over_http(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    sub_id = subscribe(client)
    base = f"{srv.url}/_control/subscriptions/{sub_id}"
    failed = requests.post(f"{base}/fail_renewal").json()
    assert failed["subscription"]["status"] == "past_due"
    assert failed["invoice"]["status"] == "open"
    assert requests.post(f"{base}/recover").json()["subscription"]["status"] == "active"
    assert requests.post(f"{base}/renew").json()["invoice"]["status"] == "paid"
    forced = requests.post(f"{base}/status", json={"status": "incomplete_expired"}).json()
    assert forced["subscription"]["status"] == "incomplete_expired"
    refused = requests.post(f"{base}/renew")
    assert refused.status_code == 400 and "error" in refused.json()

    state = requests.get(f"{srv.url}/_control/state", params={"kind": "subscriptions"}).json()
    assert [s["id"] for s in state["subscriptions"]] == [sub_id]

    requests.post(f"{srv.url}/_control/reset")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.retrieve(sub_id)
    assert client.v1.prices.retrieve(INDIVIDUAL_PRICE_ID).unit_amount == 9900


def test_sandbox_dashboard_buttons(srv: FakeStripeServer, client: stripe.StripeClient) -> None:
    sub_id = subscribe(client)
    page = requests.get(f"{srv.url}/")
    assert page.status_code == 200
    assert sub_id in page.text and "<script" not in page.text
    assert f'action="/dashboard/subscriptions/{sub_id}/fail_renewal"' in page.text
    clicked = requests.post(
        f"{srv.url}/dashboard/subscriptions/{sub_id}/fail_renewal", allow_redirects=False
    )
    assert clicked.status_code == 303
    assert client.v1.subscriptions.retrieve(sub_id).status == "past_due"


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(
        json.dumps(
            [
                {
                    "id": "prod_solo",
                    "name": "Solo",
                    "prices": [{"id": "price_solo", "unit_amount": 500}],
                }
            ]
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fakes.stripe",
            "--port",
            str(port),
            "--seed-file",
            str(catalogue),
            "--webhook-url",
            "http://127.0.0.1:9/none",
            "--webhook-secret",
            "whsec_cli",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/_control/health", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "CLI did not start"
                time.sleep(0.1)
        assert health.json()["ok"] is True
        cli = stripe.StripeClient(API_KEY, base_addresses={"api": f"http://127.0.0.1:{port}"})
        assert cli.v1.prices.retrieve("price_solo").unit_amount == 500
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_state_can_be_driven_from_several_threads(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    """HTTP handlers (loop thread) and test threads share the state under one lock."""
    sub_ids = [subscribe(client) for _ in range(4)]
    errors: list[BaseException] = []

    def churn(sub_id: str) -> None:
        try:
            for _ in range(5):
                srv.state.renew(sub_id)
                client.v1.subscriptions.update(sub_id, params={"metadata": {"n": "x"}})
                client.v1.invoices.list(params={"subscription": sub_id})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(sub_id,)) for sub_id in sub_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    for sub_id in sub_ids:
        invoices = client.v1.invoices.list(params={"subscription": sub_id, "limit": 100})
        assert len(invoices.data) == 6  # the first payment and five renewals
    paid = srv.state.events_of("invoice.paid")
    assert len({e["id"] for e in paid}) == len(paid) == 24


# -- dj-stripe against the fake -----------------------------------------------------------


@pytest.mark.django_db
def test_dj_stripe_syncs_objects_from_the_fake(
    srv: FakeStripeServer, client: stripe.StripeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.conf import settings
    from djstripe import models as dj

    # dj-stripe uses stripe-python's global configuration and the key from settings.
    monkeypatch.setattr(stripe, "api_base", srv.url)
    key = settings.STRIPE_SECRET_KEY
    sub_id = subscribe(client, [(OWNER_SEAT_PRICE_ID, 1), (TEAM_SEAT_PRICE_ID, 2)])
    srv.state.fail_renewal(sub_id)
    session_id = last_object(srv, "checkout.session.completed")["id"]

    sub = dj.Subscription.sync_from_stripe_data(stripe.Subscription.retrieve(sub_id, api_key=key))
    assert sub.status == "past_due"
    assert sub.customer.email == "ada@example.test"
    assert sub.metadata == {"member_id": "7"}
    assert {(i.price.id, i.quantity) for i in sub.items.all()} == {
        (OWNER_SEAT_PRICE_ID, 1),
        (TEAM_SEAT_PRICE_ID, 2),
    }
    assert dj.Price.objects.get(id=TEAM_SEAT_PRICE_ID).product.name == "Team seat"

    for stripe_invoice in stripe.Invoice.list(subscription=sub_id, api_key=key).auto_paging_iter():
        dj.Invoice.sync_from_stripe_data(stripe_invoice, api_key=key)
    invoices = dj.Invoice.objects.filter(customer=sub.customer).order_by("created", "djstripe_id")
    assert {(i.billing_reason, i.status) for i in invoices} == {
        ("subscription_create", "paid"),
        ("subscription_cycle", "open"),
    }
    assert dj.LineItem.objects.count() == 4  # two items on each invoice
    assert all(
        i.stripe_data["parent"]["subscription_details"]["subscription"] == sub_id for i in invoices
    )

    session = dj.Session.sync_from_stripe_data(
        stripe.checkout.Session.retrieve(session_id, api_key=key, expand=["line_items"])
    )
    assert session.subscription == sub
    assert session.customer == sub.customer
    assert session.payment_status == "paid"

    customer = dj.Customer.sync_from_stripe_data(
        stripe.Customer.retrieve(sub.customer.id, api_key=key)
    )
    assert customer.email == "ada@example.test"
    assert dj.Account.objects.filter(id=srv.state.account["id"]).exists()

    # The lookups dj-stripe makes for webhooks (re-retrieve by id) work too.
    assert dj.Subscription(id=sub_id).api_retrieve(api_key=key).id == sub_id
    assert dj.Invoice._get_or_retrieve(id=sub.stripe_data["latest_invoice"], api_key=key)


@pytest.mark.django_db
def test_dj_stripe_processes_every_event_the_fake_emits(
    srv: FakeStripeServer, client: stripe.StripeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook path: dj-stripe stores each event and runs its handlers, which re-fetch."""
    from django.conf import settings
    from djstripe import models as dj

    monkeypatch.setattr(stripe, "api_base", srv.url)
    key = settings.STRIPE_SECRET_KEY
    sub_id = subscribe(client, [(OWNER_SEAT_PRICE_ID, 1)])
    client.v1.subscriptions.update(
        sub_id,
        params={
            "items": [{"price": TEAM_SEAT_PRICE_ID, "quantity": 2}],
            "proration_behavior": "always_invoice",
        },
    )
    srv.state.fail_renewal(sub_id)
    srv.state.recover(sub_id)
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": client.v1.subscriptions.retrieve(sub_id).customer}
    )
    requests.post(f"{portal.url}/card", data={"card_number": "4242424242424242"})
    srv.state.set_cancel_at_period_end(sub_id)
    srv.state.renew(sub_id)  # ends it

    events = list(stripe.Event.list(api_key=key, limit=100).auto_paging_iter())[::-1]
    for event in events:
        dj.Event.process(json.loads(str(event)), api_key=key)

    assert dj.Event.objects.count() == len(events) == len(srv.state.events_of())
    sub = dj.Subscription.objects.get(id=sub_id)
    assert sub.status == "canceled"
    assert {i.price.id: i.quantity for i in sub.items.all()} == {
        OWNER_SEAT_PRICE_ID: 1,
        TEAM_SEAT_PRICE_ID: 2,
    }
    assert {invoice.billing_reason for invoice in dj.Invoice.objects.all()} == {
        "subscription_create",
        "subscription_update",
        "subscription_cycle",
    }


def test_disputes_and_refunds_of_a_subscription_payment(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    sub_id = subscribe(client)
    invoice_id = client.v1.subscriptions.retrieve(sub_id).latest_invoice

    # The charge that paid the invoice, and the invoice payment that links them (dahlia has no
    # charge.invoice: the way back from a payment to its invoice is /v1/invoice_payments).
    opened = srv.state.open_dispute(sub_id)
    assert (opened["status"], opened["reason"]) == ("needs_response", "fraudulent")
    dispute = client.v1.disputes.retrieve(opened["id"])
    charge = client.v1.charges.retrieve(dispute.charge)
    assert charge.disputed and charge.payment_intent == dispute.payment_intent
    assert dispute.amount == charge.amount > 0
    payments = client.v1.invoice_payments.list(
        params={"payment": {"type": "payment_intent", "payment_intent": dispute.payment_intent}}
    )
    assert [p.invoice for p in payments.data] == [invoice_id]
    with pytest.raises(FakeStripeError):
        srv.state.open_dispute(sub_id)  # that charge is disputed already

    srv.state.submit_dispute_evidence(opened["id"])
    assert client.v1.disputes.retrieve(opened["id"]).status == "under_review"
    closed = requests.post(
        f"{srv.url}/_control/disputes/{opened['id']}/close", json={"won": False}, timeout=5
    ).json()
    assert closed["status"] == "lost"
    with pytest.raises(FakeStripeError):
        srv.state.close_dispute(opened["id"], won=True)
    types = [e["type"] for e in srv.state.events_of() if e["type"].startswith("charge.dispute.")]
    assert types == ["charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"]

    refunded = srv.state.refund(sub_id, amount=100)
    assert (refunded["amount_refunded"], refunded["refunded"]) == (100, False)
    [event] = srv.state.events_of("charge.refunded")
    assert event["data"]["object"]["id"] == charge.id
    assert event["data"]["previous_attributes"] == {"amount_refunded": 0}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.disputes.retrieve("dp_missing")
