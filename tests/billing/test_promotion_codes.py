"""Promotion codes: Checkout asks for one when the plan allows it, and the discount the
member redeemed on the fake's hosted page shows on the dashboard."""

from __future__ import annotations

import pytest
import requests
import stripe
from django.urls import reverse

from billing.models import Plan
from tests import personas

pytestmark = pytest.mark.django_db


def _start(world, email: str) -> tuple[str, str]:
    member = personas.buyer(email)
    world.client.force_login(member.user)
    location = world.client.post(reverse("billing:checkout_individual"))["Location"]
    return member, location.rstrip("/").rsplit("/", 1)[-1]


def test_checkout_asks_for_a_code_only_when_the_plan_allows_it(world):
    _, plain = _start(world, "plain@example.org")
    Plan.objects.filter(kind=Plan.Kind.INDIVIDUAL).update(allow_promotion_codes=True)
    world.client.logout()
    _, promo = _start(world, "promo@example.org")

    assert world.stripe.state.get_checkout_session(plain)["allow_promotion_codes"] in (None, False)
    assert world.stripe.state.get_checkout_session(promo)["allow_promotion_codes"] is True


def test_a_redeemed_code_shows_on_the_dashboard(world):
    Plan.objects.filter(kind=Plan.Kind.INDIVIDUAL).update(allow_promotion_codes=True)
    coupon = stripe.Coupon.create(
        percent_off=25, duration="repeating", duration_in_months=3, name="Spring"
    )
    stripe.PromotionCode.create(promotion={"type": "coupon", "coupon": coupon.id}, code="SPRING25")
    member, session_id = _start(world, "blanche@example.org")

    paid = requests.post(
        f"{world.stripe.url}/checkout/{session_id}",
        data={
            "email": "blanche@example.org",
            "name": "Blanche",
            "card_number": "4242424242424242",
            "promotion_code": "spring25",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert paid.status_code in (302, 303), paid.text
    world.deliver_new()

    page = world.client.get(reverse("billing:dashboard")).content.decode()
    assert "<dt>Discount</dt><dd>SPRING25: 25% off for 3 months</dd>" in page

    staff = personas.client_for(personas.superuser())
    admin_page = staff.get(reverse("admin:members_member_change", args=[member.pk]))
    assert "SPRING25: 25% off for 3 months" in admin_page.content.decode()
