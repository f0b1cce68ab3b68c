"""The fake Stripe sells a plan catalogue: billing intervals, free trials, promotion codes,
Stripe Tax and plan changes, each driven over HTTP by stripe-python as the gateway would."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import stripe

from fakes.stripe import INDIVIDUAL_PRICE_ID, FakeStripeServer
from fakes.stripe.objects import add_interval

API_KEY = "sk_test_fake_plans"
DAY = 86400


@pytest.fixture
def srv() -> Iterator[FakeStripeServer]:
    with FakeStripeServer(webhook_secret="whsec_fake_plans") as server:
        yield server


@pytest.fixture
def client(srv: FakeStripeServer) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": srv.url}, max_network_retries=0)


def event_types(srv: FakeStripeServer, since: int = 0) -> list[str]:
    return [e["type"] for e in srv.state.events_of()[since:]]


def last_object(srv: FakeStripeServer, event_type: str) -> dict[str, Any]:
    return srv.state.events_of(event_type)[-1]["data"]["object"]


def control(srv: FakeStripeServer, sub_id: str, action: str, **body: Any) -> dict[str, Any]:
    response = requests.post(f"{srv.url}/_control/subscriptions/{sub_id}/{action}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def new_price(
    client: stripe.StripeClient, amount: int, interval: str, count: int = 1, product: str = ""
) -> stripe.Price:
    return client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": amount,
            "recurring": {"interval": interval, "interval_count": count},
            **({"product": product} if product else {"product_data": {"name": "Plan"}}),
        }
    )


def open_session(client: stripe.StripeClient, price: str = INDIVIDUAL_PRICE_ID, **extra: Any):
    customer = client.v1.customers.create(params={"email": "grace@example.test"})
    return client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price, "quantity": 1}],
            "success_url": "https://gateway.test/ok?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://gateway.test/cancelled",
            **extra,
        }
    )


def pay(session: Any, **form: str) -> requests.Response:
    """Submit the hosted Checkout page as a browser would."""
    return requests.post(
        session.url, data={"card_number": "4242 4242 4242 4242", **form}, allow_redirects=False
    )


def checkout(client: stripe.StripeClient, form: dict[str, str] | None = None, **extra: Any):
    """Open a session, pay it on the hosted page; the completed session."""
    session = open_session(client, **extra)
    response = pay(session, **(form or {}))
    assert response.status_code == 303, response.text
    return client.v1.checkout.sessions.retrieve(session.id)


# -- billing intervals ------------------------------------------------------------------------


def test_prices_take_any_interval_and_validate_it(client: stripe.StripeClient) -> None:
    quarterly = new_price(client, 25000, "month", 3)
    assert (quarterly.recurring.interval, quarterly.recurring.interval_count) == ("month", 3)
    for interval in ("day", "week", "year"):
        assert new_price(client, 100, interval).recurring.interval == interval
    with pytest.raises(stripe.InvalidRequestError) as bad_interval:
        new_price(client, 100, "fortnight")
    assert bad_interval.value.param == "recurring[interval]"
    with pytest.raises(stripe.InvalidRequestError) as too_long:
        new_price(client, 100, "year", 4)
    assert too_long.value.param == "recurring[interval_count]"


def test_a_yearly_subscription_has_yearly_periods_and_renewals(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    yearly = new_price(client, 99000, "year")
    customer = client.v1.customers.create(params={"email": "y@example.test"})
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": yearly.id}]}
    )
    item = sub["items"].data[0]
    assert item.current_period_end == add_interval(item.current_period_start, "year")
    assert item.plan.interval == "year"

    renewal = srv.state.renew(sub.id)
    renewed = renewal["subscription"]["items"]["data"][0]
    assert renewed["current_period_start"] == item.current_period_end
    assert renewed["current_period_end"] == add_interval(item.current_period_end, "year")
    assert renewal["invoice"]["total"] == 99000
    assert "/ year" in renewal["invoice"]["lines"]["data"][0]["description"]

    weekly = new_price(client, 500, "week", 2)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": weekly.id}]}
    )
    item = sub["items"].data[0]
    assert item.current_period_end - item.current_period_start == 14 * DAY


def test_catalogue_seeds_prices_with_intervals(srv: FakeStripeServer) -> None:
    catalogue = [
        {
            "id": "prod_pro",
            "name": "Pro",
            "prices": [
                {"id": "price_pro_month", "unit_amount": 1500, "interval": "month"},
                {"id": "price_pro_year", "unit_amount": 15000, "interval": "year"},
                {"id": "price_pro_quarter", "unit_amount": 4000, "interval_count": 3},
            ],
        }
    ]
    requests.post(f"{srv.url}/_control/reset", json={"catalogue": catalogue}).raise_for_status()
    recurring = {p["id"]: p["recurring"] for p in srv.state.prices.values()}
    assert recurring["price_pro_year"]["interval"] == "year"
    assert (
        recurring["price_pro_quarter"]["interval"],
        recurring["price_pro_quarter"]["interval_count"],
    ) == ("month", 3)


# -- trials -----------------------------------------------------------------------------------


def test_checkout_trial_starts_trialing_with_a_paid_zero_invoice(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    session = open_session(client, subscription_data={"trial_period_days": 14})
    assert (session.amount_total, session.payment_method_collection) == (0, "always")
    page = requests.get(session.url).text
    assert "14 days free, then $99.00 every month" in page
    assert "Start trial" in page
    before = len(srv.state.events_of())

    assert pay(session).status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.payment_status == "no_payment_required"
    sub = client.v1.subscriptions.retrieve(session.subscription)
    assert sub.status == "trialing"
    assert sub.trial_end - sub.trial_start == 14 * DAY
    assert sub.billing_cycle_anchor == sub.trial_end
    assert sub["items"].data[0].current_period_end == sub.trial_end
    assert sub.default_payment_method is not None
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (invoice.billing_reason, invoice.status, invoice.total) == (
        "subscription_create",
        "paid",
        0,
    )
    assert invoice.lines.data[0].description == "Trial period for Individual membership"
    types = event_types(srv, before)
    assert types.index("customer.subscription.created") < types.index("invoice.paid")
    assert [t for t in types if t.startswith("invoice.")] == [
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    assert last_object(srv, "customer.subscription.created")["status"] == "trialing"
    assert not [c for c in srv.state.charges.values() if c["customer"] == sub.customer]

    control(srv, sub.id, "trial_will_end")
    assert last_object(srv, "customer.subscription.trial_will_end")["id"] == sub.id

    ended = control(srv, sub.id, "end_trial")
    assert ended["subscription"]["status"] == "active"
    assert ended["subscription"]["trial_end"] == sub.trial_end
    item = ended["subscription"]["items"]["data"][0]
    assert item["current_period_start"] == sub.trial_end
    assert item["current_period_end"] == add_interval(sub.trial_end, "month")
    invoice = ended["invoice"]
    assert (invoice["billing_reason"], invoice["status"], invoice["amount_paid"]) == (
        "subscription_cycle",
        "paid",
        9900,
    )
    updated = srv.state.events_of("customer.subscription.updated")[-1]["data"]
    assert updated["previous_attributes"]["status"] == "trialing"


@pytest.mark.parametrize(
    ("behaviour", "status", "event"),
    [
        ("cancel", "canceled", "customer.subscription.deleted"),
        ("pause", "paused", "customer.subscription.paused"),
        ("create_invoice", "past_due", "invoice.payment_failed"),
    ],
)
def test_a_trial_without_a_card_ends_by_its_missing_payment_method_setting(
    srv: FakeStripeServer, client: stripe.StripeClient, behaviour: str, status: str, event: str
) -> None:
    session = open_session(
        client,
        payment_method_collection="if_required",
        subscription_data={
            "trial_period_days": 7,
            "trial_settings": {"end_behavior": {"missing_payment_method": behaviour}},
        },
    )
    page = requests.get(session.url).text
    assert "Card number (optional)" in page
    assert pay(session, card_number="").status_code == 303
    sub = client.v1.subscriptions.retrieve(
        client.v1.checkout.sessions.retrieve(session.id).subscription
    )
    assert (sub.status, sub.default_payment_method) == ("trialing", None)
    assert sub.trial_settings.end_behavior.missing_payment_method == behaviour

    ended = control(srv, sub.id, "end_trial")["subscription"]
    assert ended["status"] == status
    assert srv.state.events_of(event)
    if behaviour == "create_invoice":
        invoice = client.v1.invoices.retrieve(ended["latest_invoice"])
        assert (invoice.status, invoice.billing_reason) == ("open", "subscription_cycle")
    with pytest.raises(requests.HTTPError):  # only a trialing subscription has a trial to end
        requests.post(f"{srv.url}/_control/subscriptions/{sub.id}/end_trial").raise_for_status()


def test_a_card_is_required_when_collection_is_always(client: stripe.StripeClient) -> None:
    session = open_session(client, subscription_data={"trial_period_days": 7})
    assert pay(session, card_number="").status_code == 303  # the page's default test card
    sub = client.v1.subscriptions.retrieve(
        client.v1.checkout.sessions.retrieve(session.id).subscription
    )
    assert sub.default_payment_method is not None


def test_api_subscription_trials(srv: FakeStripeServer, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "t@example.test"})
    trial_end = int(time.time()) + 30 * DAY
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": INDIVIDUAL_PRICE_ID}],
            "trial_end": trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "cancel"}},
        }
    )
    assert (sub.status, sub.trial_end, sub.default_payment_method) == ("trialing", trial_end, None)
    assert client.v1.invoices.retrieve(sub.latest_invoice).amount_due == 0
    # renew on a trialing subscription is the end of its trial
    assert srv.state.renew(sub.id)["subscription"]["status"] == "canceled"

    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": INDIVIDUAL_PRICE_ID}],
                "trial_end": trial_end,
                "trial_period_days": 3,
            }
        )
    with pytest.raises(stripe.InvalidRequestError) as soon:
        open_session(client, subscription_data={"trial_end": int(time.time()) + 3600})
    assert soon.value.param == "subscription_data[trial_end]"
    now = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": INDIVIDUAL_PRICE_ID}],
            "trial_end": "now",
        }
    )
    assert now.status == "active"


def test_dashboard_offers_trial_buttons_for_trialing_subscriptions(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    session = checkout(client, subscription_data={"trial_period_days": 3})
    page = requests.get(f"{srv.url}/").text
    assert f"/dashboard/subscriptions/{session.subscription}/end_trial" in page
    response = requests.post(
        f"{srv.url}/dashboard/subscriptions/{session.subscription}/end_trial",
        allow_redirects=False,
    )
    assert response.status_code == 303
    assert client.v1.subscriptions.retrieve(session.subscription).status == "active"


# -- coupons and promotion codes ----------------------------------------------------------------


def make_promotion(
    client: stripe.StripeClient, code: str, **coupon: Any
) -> tuple[stripe.Coupon, stripe.PromotionCode]:
    made = client.v1.coupons.create(params=coupon)
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": made.id}, "code": code}
    )
    return made, promo


def test_coupon_and_promotion_code_endpoints(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    quarter = client.v1.coupons.create(
        params={"percent_off": 25, "duration": "repeating", "duration_in_months": 3}
    )
    assert (quarter.object, quarter.percent_off, quarter.amount_off) == ("coupon", 25, None)
    assert (quarter.duration, quarter.duration_in_months, quarter.valid) == ("repeating", 3, True)
    ten = client.v1.coupons.create(
        params={"id": "TENOFF", "amount_off": 1000, "currency": "usd", "duration": "once"}
    )
    assert (ten.id, ten.currency) == ("TENOFF", "usd")
    assert client.v1.coupons.retrieve("TENOFF").amount_off == 1000
    assert {c.id for c in client.v1.coupons.list().data} == {quarter.id, "TENOFF"}
    for bad in (
        {"amount_off": 1000},  # no currency
        {"percent_off": 10, "amount_off": 100, "currency": "usd"},
        {"percent_off": 10, "duration": "repeating"},  # no duration_in_months
    ):
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.coupons.create(params=bad)

    promo = client.v1.promotion_codes.create(
        params={
            "promotion": {"type": "coupon", "coupon": quarter.id},
            "code": "LAUNCH25",
            "max_redemptions": 2,
        }
    )
    assert promo.id.startswith("promo_")
    assert (promo.code, promo.active, promo.times_redeemed) == ("LAUNCH25", True, 0)
    assert (promo.promotion.type, promo.promotion.coupon) == ("coupon", quarter.id)
    expanded = client.v1.promotion_codes.retrieve(promo.id, params={"expand": ["promotion.coupon"]})
    assert expanded.promotion.coupon.percent_off == 25
    assert [p.id for p in client.v1.promotion_codes.list(params={"code": "LAUNCH25"}).data] == [
        promo.id
    ]
    assert client.v1.promotion_codes.list(params={"coupon": "TENOFF"}).data == []
    with pytest.raises(stripe.InvalidRequestError) as taken:
        client.v1.promotion_codes.create(
            params={"promotion": {"type": "coupon", "coupon": "TENOFF"}, "code": "LAUNCH25"}
        )
    assert taken.value.code == "resource_already_exists"
    with pytest.raises(stripe.InvalidRequestError) as legacy:
        client.v1.promotion_codes.create(params={"coupon": "TENOFF"})
    assert legacy.value.param == "coupon"

    off = client.v1.promotion_codes.update(promo.id, params={"active": False})
    assert off.active is False
    assert client.v1.promotion_codes.list(params={"active": True}).data == []
    assert event_types(srv).count("promotion_code.created") == 1
    assert "promotion_code.updated" in event_types(srv)


def test_a_promotion_code_typed_on_the_checkout_page_discounts_the_subscription(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    coupon, promo = make_promotion(
        client, "LAUNCH25", percent_off=25, duration="repeating", duration_in_months=2
    )
    _, retired = make_promotion(client, "OLDCODE", percent_off=50)
    client.v1.promotion_codes.update(retired.id, params={"active": False})
    session = open_session(client, allow_promotion_codes=True)
    assert 'name="promotion_code"' in requests.get(session.url).text

    for wrong in ("NOPE", "OLDCODE"):
        refused = pay(session, promotion_code=wrong)
        assert refused.status_code == 400
        assert "This code is invalid." in refused.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"

    assert pay(session, promotion_code=" launch25 ").status_code == 303  # case-insensitive
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert (session.amount_subtotal, session.amount_total) == (9900, 7425)
    assert session.total_details.amount_discount == 2475
    assert session.discounts[0].promotion_code == promo.id
    sub = client.v1.subscriptions.retrieve(session.subscription, params={"expand": ["discounts"]})
    discount = sub.discounts[0]
    assert (discount.object, discount.source.coupon, discount.promotion_code) == (
        "discount",
        coupon.id,
        promo.id,
    )
    assert discount.subscription == sub.id
    assert discount.end == add_interval(discount.start, "month", 2)
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (invoice.subtotal, invoice.total, invoice.amount_paid) == (9900, 7425, 7425)
    assert invoice.discounts == [discount.id]
    assert [(d.amount, d.discount) for d in invoice.total_discount_amounts] == [(2475, discount.id)]
    assert invoice.lines.data[0].discount_amounts[0].amount == 2475
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1
    assert last_object(srv, "customer.discount.created")["id"] == discount.id
    # repeating: the next renewal is still discounted
    assert srv.state.renew(sub.id)["invoice"]["total"] == 7425


def test_checkout_discounts_param_and_coupon_durations(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    once = client.v1.coupons.create(
        params={"amount_off": 1000, "currency": "usd", "duration": "once", "max_redemptions": 1}
    )
    session = open_session(client, discounts=[{"coupon": once.id}])
    assert (session.amount_total, session.total_details.amount_discount) == (8900, 1000)
    assert session.discounts[0].coupon == once.id
    done = requests.post(f"{srv.url}/_control/checkout/{session.id}/complete", json={})
    sub_id = done.json()["session"]["subscription"]
    assert client.v1.invoices.retrieve(done.json()["session"]["invoice"]).total == 8900
    assert srv.state.renew(sub_id)["invoice"]["total"] == 9900  # once: the first invoice only

    with pytest.raises(stripe.InvalidRequestError):  # max_redemptions reached
        open_session(client, discounts=[{"coupon": once.id}])
    forever, promo = make_promotion(client, "FOREVER10", percent_off=10, duration="forever")
    with pytest.raises(stripe.InvalidRequestError):
        open_session(client, discounts=[{"promotion_code": promo.id}], allow_promotion_codes=True)

    customer = client.v1.customers.create(params={"email": "api@example.test"})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": INDIVIDUAL_PRICE_ID}],
            "discounts": [{"promotion_code": promo.id}],
        }
    )
    assert client.v1.invoices.retrieve(sub.latest_invoice).total == 8910
    for _ in range(2):
        assert srv.state.renew(sub.id)["invoice"]["total"] == 8910
    cleared = client.v1.subscriptions.update(sub.id, params={"discounts": ""})
    assert cleared.discounts == []
    assert srv.state.renew(sub.id)["invoice"]["total"] == 9900
    assert client.v1.coupons.retrieve(forever.id).times_redeemed == 1


# -- Stripe Tax -----------------------------------------------------------------------------------

TAXED = {
    "automatic_tax": {"enabled": True},
    "billing_address_collection": "required",
    "tax_id_collection": {"enabled": True},
    "customer_update": {"address": "auto", "name": "auto"},
}


@pytest.mark.parametrize(
    ("update", "param"),
    [
        ({"address": "auto"}, "customer_update[name]"),
        ({"name": "auto"}, "customer_update[address]"),
    ],
)
def test_tax_on_an_existing_customer_needs_checkout_to_save_what_it_collects(
    client: stripe.StripeClient, update: dict[str, str], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        open_session(client, **{**TAXED, "customer_update": update})
    assert refused.value.param == param


def test_checkout_with_automatic_tax_asks_for_the_country_and_adds_tax(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    session = open_session(client, **TAXED)
    assert (session.automatic_tax.enabled, session.automatic_tax.status) == (
        True,
        "requires_location_inputs",
    )
    page = requests.get(session.url).text
    assert 'name="country"' in page and 'name="tax_id"' in page
    assert "DE 19%" in page
    refused = pay(session)
    assert refused.status_code == 400 and "Your country is required." in refused.text

    assert pay(session, country="DE", postal_code="10115", tax_id="DE123456789").status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.automatic_tax.status == "complete"
    assert (session.amount_subtotal, session.total_details.amount_tax, session.amount_total) == (
        9900,
        1881,
        11781,
    )
    assert session.customer_details.address.country == "DE"
    assert [(t.type, t.value) for t in session.customer_details.tax_ids] == [
        ("eu_vat", "DE123456789")
    ]

    sub = client.v1.subscriptions.retrieve(session.subscription)
    assert sub.automatic_tax.enabled is True
    invoice = client.v1.invoices.retrieve(
        sub.latest_invoice, params={"expand": ["total_taxes.tax_rate_details.tax_rate"]}
    )
    assert (invoice.automatic_tax.enabled, invoice.automatic_tax.status) == (True, "complete")
    assert (invoice.subtotal, invoice.total_excluding_tax, invoice.total) == (9900, 9900, 11781)
    assert invoice.amount_paid == 11781
    total_tax = invoice.total_taxes[0]
    assert (total_tax.amount, total_tax.tax_behavior, total_tax.taxability_reason) == (
        1881,
        "exclusive",
        "standard_rated",
    )
    assert (total_tax.type, total_tax.taxable_amount) == ("tax_rate_details", 9900)
    assert total_tax.tax_rate_details.tax_rate.percentage == 19
    assert invoice.lines.data[0].taxes[0].amount == 1881
    assert invoice.customer_address.country == "DE"
    assert invoice.customer_tax_ids[0].value == "DE123456789"

    customer = client.v1.customers.retrieve(sub.customer, params={"expand": ["tax_ids"]})
    assert (customer.address.country, customer.address.postal_code) == ("DE", "10115")
    assert customer.tax_ids.data[0].type == "eu_vat"
    listed = client.v1.customers.tax_ids.list(sub.customer)
    assert [t.value for t in listed.data] == ["DE123456789"]
    assert last_object(srv, "customer.tax_id.created")["customer"] == sub.customer
    assert client.v1.tax_rates.retrieve("txr_fake_de").display_name == "VAT"
    assert srv.state.renew(sub.id)["invoice"]["total"] == 11781


def test_tax_is_charged_on_the_discounted_amount(client: stripe.StripeClient) -> None:
    make_promotion(client, "QUARTER", percent_off=25, duration="forever")
    session = checkout(
        client, {"country": "GB", "promotion_code": "QUARTER"}, allow_promotion_codes=True, **TAXED
    )
    invoice = client.v1.invoices.retrieve(session.invoice)
    # 9900 − 25% = 7425; 20% VAT on that = 1485
    assert (invoice.subtotal, invoice.total_excluding_tax, invoice.total) == (9900, 7425, 8910)
    assert invoice.total_taxes[0].amount == 1485
    assert session.total_details.amount_discount == 2475
    assert session.total_details.amount_tax == 1485


def test_api_subscriptions_with_automatic_tax_need_a_customer_location(
    client: stripe.StripeClient,
) -> None:
    nowhere = client.v1.customers.create(params={"email": "n@example.test"})
    params = {"items": [{"price": INDIVIDUAL_PRICE_ID}], "automatic_tax": {"enabled": True}}
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.subscriptions.create(params={"customer": nowhere.id, **params})
    assert unknown.value.code == "customer_tax_location_invalid"

    american = client.v1.customers.create(
        params={"email": "us@example.test", "address": {"country": "us", "postal_code": "94107"}}
    )
    assert american.address.country == "US"
    sub = client.v1.subscriptions.create(params={"customer": american.id, **params})
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.total == 9900
    assert (invoice.total_taxes[0].amount, invoice.total_taxes[0].taxability_reason) == (
        0,
        "not_collecting",
    )
    tax_id = client.v1.customers.tax_ids.create(
        american.id, params={"type": "us_ein", "value": "12-3456789"}
    )
    assert (tax_id.object, tax_id.owner.customer, tax_id.country) == ("tax_id", american.id, "US")


# -- plan changes -----------------------------------------------------------------------------


@pytest.fixture
def plans(client: stripe.StripeClient) -> dict[str, str]:
    product = client.v1.products.create(params={"name": "Plans"}).id
    return {
        "basic": new_price(client, 1000, "month", product=product).id,
        "pro": new_price(client, 3000, "month", product=product).id,
        "pro_year": new_price(client, 30000, "year", product=product).id,
    }


def halfway(srv: FakeStripeServer, client: stripe.StripeClient, price: str):
    """A subscription to ``price``, with the fake's clock moved to the middle of its period.

    Returns the subscription's first item and ``f``, the unused share of the period.
    """
    customer = client.v1.customers.create(params={"email": "p@example.test"})
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price}]}
    )
    item = sub["items"].data[0]
    start, end = item.current_period_start, item.current_period_end
    now = start + (end - start) // 2
    srv.state.now = lambda: now  # type: ignore[method-assign]
    return sub, item, (end - now) / (end - start)


def change(client: stripe.StripeClient, sub: Any, item: Any, price: str, **params: Any):
    return client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "price": price}], **params}
    )


def test_upgrade_within_an_interval_invoices_the_proration_at_once(
    srv: FakeStripeServer, client: stripe.StripeClient, plans: dict[str, str]
) -> None:
    sub, item, f = halfway(srv, client, plans["basic"])
    before = len(srv.state.events_of())
    updated = change(client, sub, item, plans["pro"], proration_behavior="always_invoice")
    new_item = updated["items"].data[0]
    assert (new_item.id, new_item.price.id) == (item.id, plans["pro"])
    assert new_item.current_period_end == item.current_period_end  # same cycle

    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    assert (invoice.billing_reason, invoice.status) == ("subscription_update", "paid")
    amounts = sorted(line.amount for line in invoice.lines.data)
    assert amounts == [-round(1000 * f), round(3000 * f)]
    assert invoice.amount_paid == round(3000 * f) - round(1000 * f)
    assert all(line.parent.invoice_item_details.proration for line in invoice.lines.data)

    types = event_types(srv, before)
    assert types[:3] == [
        "customer.subscription.updated",
        "invoiceitem.created",
        "invoiceitem.created",
    ]
    assert types[3:] == [
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    previous = srv.state.events_of("customer.subscription.updated")[-1]["data"][
        "previous_attributes"
    ]
    assert previous["items"]["data"][0]["price"]["id"] == plans["basic"]
    # no double charge: the next renewal bills the new price only
    assert srv.state.renew(sub.id)["invoice"]["total"] == 3000


def test_downgrade_with_create_prorations_leaves_a_credit_for_the_renewal(
    srv: FakeStripeServer, client: stripe.StripeClient, plans: dict[str, str]
) -> None:
    sub, item, f = halfway(srv, client, plans["pro"])
    updated = change(client, sub, item, plans["basic"])
    assert updated.latest_invoice == sub.latest_invoice  # nothing invoiced yet
    pending = client.v1.invoice_items.list(params={"customer": sub.customer, "pending": True})
    assert sorted(i.amount for i in pending.data) == [-round(3000 * f), round(1000 * f)]
    renewal = srv.state.renew(sub.id)["invoice"]
    assert renewal["total"] == 1000 - round(3000 * f) + round(1000 * f)
    assert client.v1.invoice_items.list(params={"pending": True}).data == []

    quiet = change(client, sub, updated["items"].data[0], plans["pro"], proration_behavior="none")
    assert quiet.latest_invoice == renewal["id"]
    assert client.v1.invoice_items.list(params={"pending": True}).data == []


def test_switching_to_a_yearly_price_resets_the_cycle_and_invoices_now(
    srv: FakeStripeServer, client: stripe.StripeClient, plans: dict[str, str]
) -> None:
    sub, item, f = halfway(srv, client, plans["basic"])
    now = srv.state.now()
    before = len(srv.state.events_of())
    updated = change(client, sub, item, plans["pro_year"])  # create_prorations, the default
    new_item = updated["items"].data[0]
    assert updated.billing_cycle_anchor == now
    assert (new_item.current_period_start, new_item.current_period_end) == (
        now,
        add_interval(now, "year"),
    )
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    assert (invoice.billing_reason, invoice.status) == ("subscription_update", "paid")
    assert invoice.total == 30000 - round(1000 * f)
    full = next(line for line in invoice.lines.data if line.amount > 0)
    assert (full.period.start, full.period.end) == (now, add_interval(now, "year"))
    previous = srv.state.events_of("customer.subscription.updated")[-1]["data"][
        "previous_attributes"
    ]
    assert previous["billing_cycle_anchor"] == sub.billing_cycle_anchor
    assert "invoice.paid" in event_types(srv, before)

    renewal = srv.state.renew(sub.id)["invoice"]
    assert renewal["total"] == 30000  # the credit was used once, the year billed once
    assert renewal["period_start"] == now


def test_billing_cycle_anchor_now_without_prorations_bills_a_full_period(
    srv: FakeStripeServer, client: stripe.StripeClient, plans: dict[str, str]
) -> None:
    sub, item, _ = halfway(srv, client, plans["basic"])
    updated = client.v1.subscriptions.update(
        sub.id, params={"billing_cycle_anchor": "now", "proration_behavior": "none"}
    )
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    assert (invoice.total, len(invoice.lines.data)) == (1000, 1)
    assert updated["items"].data[0].current_period_start == srv.state.now()
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(sub.id, params={"billing_cycle_anchor": "later"})


# -- refunds ----------------------------------------------------------------------------------


def test_a_refund_by_payment_intent_returns_part_of_a_paid_invoice(
    srv: FakeStripeServer, client: stripe.StripeClient
) -> None:
    session = checkout(client)
    sub = client.v1.subscriptions.retrieve(session.subscription)
    payment = client.v1.invoice_payments.list(params={"invoice": sub.latest_invoice}).data[0]
    intent = payment.payment.payment_intent

    refund = client.v1.refunds.create(params={"payment_intent": intent, "amount": 4000})
    again = requests.post(
        f"{srv.url}/v1/refunds",
        data={"payment_intent": intent, "amount": 9000},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )

    assert (refund.object, refund.amount, refund.status) == ("refund", 4000, "succeeded")
    charge = client.v1.charges.retrieve(refund.charge)
    assert (charge.amount_refunded, charge.refunded) == (4000, False)
    assert last_object(srv, "charge.refunded")["amount_refunded"] == 4000
    # More than is left on the charge is refused, and nothing changes.
    assert again.status_code == 400 and again.json()["error"]["param"] == "amount"
    assert client.v1.charges.retrieve(refund.charge).amount_refunded == 4000
