"""Stripe Tax (``STRIPE_TAX_ENABLED``): what our Checkout asks the fake Stripe for, what the
buyer fills in on its hosted page, and the taxed invoices the member then reads on the billing
page after the webhooks came in (view → fake Stripe → webhook → page)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import requests
import stripe
from django.urls import reverse
from django.utils import timezone
from djstripe.models import Customer, Invoice

from billing.entitlement import member_is_entitled
from billing.models import Plan
from members.models import Member, SeatTier, Team
from members.selectors import InvoiceRows, invoice_row, member_invoices
from tests import personas
from tests.members.stripe_fake import requests_to
from tests.providers import pay_checkout

pytestmark = pytest.mark.django_db

TAX_PARAMETERS = {
    "automatic_tax",
    "billing_address_collection",
    "customer_update",
    "tax_id_collection",
}


@pytest.fixture
def tax_on(settings: Any) -> None:
    settings.STRIPE_TAX_ENABLED = True


def _checkout(world: Any, member: Member, path: str, data: dict[str, Any] | None = None) -> str:
    """Start a checkout from our page as the logged-in member; returns the session id."""
    world.client.force_login(member.user)
    response = world.client.post(reverse(path), data or {})
    assert response.status_code == 302, response.content
    return str(response["Location"]).rstrip("/").rsplit("/", 1)[-1]


def _company(world: Any, member: Member, name: str = "Acme Widgets") -> str:
    return _checkout(
        world,
        member,
        "billing:company",
        {"company_name": name, "owner_seats": 2, "team_seats": 1},
    )


def _session_request(world: Any) -> dict[str, Any]:
    """The parameters of the (last) Checkout Session our code created on the fake."""
    created = requests_to(world.stripe, "POST", "/v1/checkout/sessions")
    assert created, "no Checkout Session was created"
    return dict(created[-1]["params"])


def _invoice_table(world: Any) -> list[list[str]]:
    """The billing page's invoice table as text: the header row, then one row per invoice."""
    response = world.client.get(reverse("billing:billing"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="inv-title"' in page, "the billing page lists no invoices"
    table = page[page.index('id="inv-title"') : page.index("</table>")]
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)
        rows.append([" ".join(re.sub(r"<[^>]+>", "", cell).split()) for cell in cells])
    return rows


# --- the session's parameters ----------------------------------------------------------------


def test_with_tax_off_checkout_sends_no_tax_parameters(world):
    member = personas.buyer("plain@example.org")
    session = world.stripe.state.get_checkout_session(
        _checkout(world, member, "billing:checkout_individual")
    )

    assert not TAX_PARAMETERS & set(_session_request(world))
    assert session["automatic_tax"]["enabled"] is False
    assert session["billing_address_collection"] is None
    assert session["tax_id_collection"]["enabled"] is False
    page = requests.get(session["url"], timeout=10).text
    assert 'name="country"' not in page and 'name="tax_id"' not in page


def test_with_tax_on_an_individual_checkout_asks_the_address_and_no_tax_id(world, tax_on):
    member = personas.buyer("ines@example.org")
    session_id = _checkout(world, member, "billing:checkout_individual")
    session = world.stripe.state.get_checkout_session(session_id)

    sent = _session_request(world)
    assert sent["automatic_tax"] == {"enabled": "true"}
    assert sent["billing_address_collection"] == "required"
    # The session names the member's existing customer: Stripe needs leave to save onto it.
    assert sent["customer"] == member.stripe_customer_id
    assert sent["customer_update"] == {"address": "auto", "name": "auto"}
    assert "tax_id_collection" not in sent
    assert session["automatic_tax"]["enabled"] is True
    assert session["billing_address_collection"] == "required"
    assert session["tax_id_collection"]["enabled"] is False


def test_with_tax_on_a_company_checkout_also_asks_the_tax_id(world, tax_on):
    member = personas.buyer("owner@acme.example")
    session = world.stripe.state.get_checkout_session(_company(world, member))

    sent = _session_request(world)
    assert sent["automatic_tax"] == {"enabled": "true"}
    assert sent["billing_address_collection"] == "required"
    assert sent["customer_update"] == {"address": "auto", "name": "auto"}
    assert sent["tax_id_collection"] == {"enabled": "true"}
    assert session["tax_id_collection"]["enabled"] is True
    assert session["customer"] == Team.objects.get(primary_owner=member).stripe_customer_id


# --- paid on the hosted page, then the billing page ------------------------------------------


def test_a_german_member_pays_19_percent_vat_and_sees_it_on_the_billing_page(world, tax_on):
    member = personas.buyer("greta@example.org")
    session_id = _checkout(world, member, "billing:checkout_individual")

    pay_checkout(
        world.stripe, session_id, email="greta@example.org", country="DE", postal_code="10115"
    )
    world.deliver_new()

    member.refresh_from_db()
    assert member.subscription_id and member.paid_at is not None
    assert member_is_entitled(member)
    customer = stripe.Customer.retrieve(member.stripe_customer_id)
    assert customer.address.country == "DE"  # the address entered is the customer's now
    header, row = _invoice_table(world)
    assert header == ["Date", "Number", "Subtotal", "Tax", "Total", "Status"]
    assert row[2:] == ["$99.00", "$18.81", "$117.81", "Paid"]
    page = world.client.get(reverse("billing:billing")).content.decode()
    assert "Tax is worked out from your billing address." in page

    # The renewal is taxed too, from the address saved on the customer.
    world.stripe.state.renew(member.subscription_id)
    world.deliver_new()
    _, newest, first = _invoice_table(world)
    assert newest[2:] == first[2:] == ["$99.00", "$18.81", "$117.81", "Paid"]


def test_a_company_checkout_with_tax_saves_the_vat_number_on_the_team_customer(world, tax_on):
    member = personas.buyer("owner@acme.example")
    session_id = _company(world, member)

    pay_checkout(
        world.stripe,
        session_id,
        email="owner@acme.example",
        country="DE",
        postal_code="10115",
        tax_id="DE123456789",
    )
    world.deliver_new()

    team = Team.objects.get(primary_owner=member)
    member.refresh_from_db()
    assert team.subscription_id and (member.team_id, member.seat_tier) == (team.pk, SeatTier.OWNER)
    tax_ids = stripe.Customer.list_tax_ids(team.stripe_customer_id).data
    assert [(t.type, t.value) for t in tax_ids] == [("eu_vat", "DE123456789")]
    assert not stripe.Customer.list_tax_ids(member.stripe_customer_id).data  # not the person's
    header, row = _invoice_table(world)
    # 2 owner seats at $99 and a team seat at $49; 19 % on each line.
    assert header == ["Date", "Number", "Subtotal", "Tax", "Total", "Status"]
    assert row[2:] == ["$247.00", "$46.93", "$293.93", "Paid"]


def test_discount_and_tax_both_show_and_the_tax_is_on_the_discounted_amount(world, tax_on):
    Plan.objects.filter(kind=Plan.Kind.INDIVIDUAL).update(allow_promotion_codes=True)
    coupon = stripe.Coupon.create(percent_off=25, duration="forever", name="Quarter")
    stripe.PromotionCode.create(promotion={"type": "coupon", "coupon": coupon.id}, code="QUARTER")
    member = personas.buyer("gwen@example.org")
    session_id = _checkout(world, member, "billing:checkout_individual")

    pay_checkout(
        world.stripe, session_id, email="gwen@example.org", country="GB", promotion_code="QUARTER"
    )
    world.deliver_new()

    header, row = _invoice_table(world)
    assert header == ["Date", "Number", "Subtotal", "Discount", "Tax", "Total", "Status"]
    # $99 − 25 % = $74.25; 20 % VAT on that = $14.85.
    assert row[2:] == ["$99.00", "-$24.75", "$14.85", "$89.10", "Paid"]


def test_where_stripe_collects_no_tax_the_billing_page_shows_no_tax_column(world, tax_on):
    member = personas.buyer("sam@example.org")
    session_id = _checkout(world, member, "billing:checkout_individual")

    pay_checkout(world.stripe, session_id, email="sam@example.org", country="US")
    world.deliver_new()

    member.refresh_from_db()
    invoice = stripe.Invoice.retrieve(
        stripe.Subscription.retrieve(member.subscription_id).latest_invoice
    )
    assert invoice.automatic_tax.enabled and invoice.total_taxes[0].amount == 0
    header, row = _invoice_table(world)
    assert header == ["Date", "Number", "Amount", "Status"]
    assert row[2:] == ["$99.00", "Paid"]


def test_with_tax_off_a_purchase_asks_no_address_and_shows_no_tax(world):
    member = personas.buyer("olga@example.org")
    session_id = _checkout(world, member, "billing:checkout_individual")

    pay_checkout(world.stripe, session_id, email="olga@example.org")  # no country given
    world.deliver_new()

    member.refresh_from_db()
    assert member_is_entitled(member)
    subscription = stripe.Subscription.retrieve(member.subscription_id)
    assert subscription.automatic_tax.enabled is False
    assert stripe.Customer.retrieve(member.stripe_customer_id).address is None
    header, row = _invoice_table(world)
    assert header == ["Date", "Number", "Amount", "Status"]
    assert row[2:] == ["$99.00", "Paid"]
    page = world.client.get(reverse("billing:billing")).content.decode()
    assert "Tax is worked out" not in page


# --- member_invoices: amounts for the invoice's currency -------------------------------------


def _invoice(**data: Any) -> dict[str, Any]:
    return {
        "number": "INV-1",
        "currency": "eur",
        "status": "paid",
        "subtotal": 10000,
        "total": 10000,
        **data,
    }


def test_invoice_row_formats_discount_and_tax_for_the_currency():
    row = invoice_row(
        "in_1",
        None,
        _invoice(
            total_discount_amounts=[{"amount": 1000, "discount": "di_1"}],
            total_taxes=[
                {"amount": 1710, "tax_behavior": "exclusive", "taxable_amount": 9000},
            ],
            total=10710,
        ),
    )
    assert (row["subtotal"], row["discount"], row["tax"], row["amount"]) == (
        "€100.00",
        "-€10.00",
        "€17.10",
        "€107.10",
    )
    assert row["taxed"] and not row["tax_included"]

    yen = invoice_row(
        "in_2",
        None,
        {
            "currency": "jpy",
            "subtotal": 1000,
            "total": 1100,
            "total_taxes": [{"amount": 60}, {"amount": 40}],  # two lines' taxes add up
        },
    )
    assert (yen["number"], yen["subtotal"], yen["discount"], yen["tax"], yen["amount"]) == (
        "in_2",
        "¥1,000",
        "",
        "¥100",
        "¥1,100",
    )


def test_invoice_row_reads_the_older_tax_fields_and_inclusive_tax():
    older = invoice_row("in_1", None, _invoice(currency="gbp", tax=2000, total=12000))
    assert (older["tax"], older["amount"], older["taxed"]) == ("£20.00", "£120.00", True)

    amounts = invoice_row(
        "in_2",
        None,
        _invoice(total_tax_amounts=[{"amount": 1597, "inclusive": True, "tax_rate": "txr_1"}]),
    )
    assert (amounts["tax"], amounts["tax_included"], amounts["amount"]) == (
        "€15.97",
        True,
        "€100.00",
    )
    inclusive = invoice_row(
        "in_3", None, _invoice(total_taxes=[{"amount": 1597, "tax_behavior": "inclusive"}])
    )
    assert inclusive["tax_included"] is True


def test_invoice_row_without_tax_has_none_and_a_zero_tax_is_not_noise():
    plain = invoice_row("in_1", None, _invoice(total_taxes=[], tax=None))
    assert (plain["tax"], plain["taxed"], plain["discount"]) == ("", False, "")
    zero = invoice_row("in_2", None, _invoice(total_taxes=[{"amount": 0}]))
    assert (zero["tax"], zero["taxed"]) == ("€0.00", False)

    rows = InvoiceRows([plain, zero])
    assert not (rows.shows_tax or rows.shows_discount or rows.shows_breakdown)
    taxed = invoice_row("in_3", None, _invoice(total_taxes=[{"amount": 1900}], total=11900))
    rows = InvoiceRows([plain, taxed])
    assert rows.shows_tax and rows.shows_breakdown and not rows.shows_discount


def test_member_invoices_reads_the_mirror_of_the_members_subscription():
    user = personas.User.objects.create_user("mirror@example.org", personas.SIGNUP_PASSWORD)
    member = Member.objects.create(user=user, subscription_id="sub_mirror")
    customer = Customer.objects.create(id="cus_mirror", livemode=False, stripe_data={})
    base = {
        "currency": "eur",
        "status": "paid",
        "parent": {"subscription_details": {"subscription": "sub_mirror"}},
    }
    for number, created, data in (
        ("A-1", 1, {"subtotal": 9900, "total": 9900}),
        (
            "A-2",
            2,
            {
                "subtotal": 9900,
                "total": 8836,
                "total_discount_amounts": [{"amount": 2475}],
                "total_taxes": [{"amount": 1411}],
            },
        ),
    ):
        Invoice.objects.create(
            id=f"in_{number}",
            customer=customer,
            livemode=False,
            created=timezone.now() + timedelta(seconds=created),
            stripe_data={**base, **data, "number": number},
        )

    rows = member_invoices(member=member)

    assert [row["number"] for row in rows] == ["A-2", "A-1"]
    assert [(r["subtotal"], r["discount"], r["tax"], r["amount"]) for r in rows] == [
        ("€99.00", "-€24.75", "€14.11", "€88.36"),
        ("€99.00", "", "", "€99.00"),
    ]
    assert rows.shows_tax and rows.shows_discount
    member.subscription_id = ""
    assert member_invoices(member=member) == []
