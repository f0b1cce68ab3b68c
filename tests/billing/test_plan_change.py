"""Changing plans from the dashboard, through the fake Stripe over HTTP and our webhooks.

Same kind (monthly ↔ yearly): one subscription update with proration, the subscription and the
member's access unchanged. Individual ↔ company: a new Checkout that replaces the old plan once
paid; the old one is refunded for its unused time and cancelled, and access never stops.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from django.db import transaction
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.entitlement import member_is_entitled
from billing.models import Plan
from billing.plan_change import replaced_subscription_end
from billing.services import checkout_completed
from members.models import Member, SeatTier, Team
from ops.models import AuditAction, AuditLog, Notification
from tests.journeys import World, subscribe_company, subscribe_individual
from tests.lifecycle.test_truth_not_events import deliveries
from tests.personas import seat_member
from tests.providers import deliver, pay_checkout, recorded_events, yearly_prices

pytestmark = pytest.mark.django_db(transaction=True)

ENDINGS = ("farewell", "removal", "subscription_ended")


def _stripe_sub(world: World, sub_id: str) -> dict[str, Any]:
    return world.stripe.state.get_subscription(sub_id)


def _prices(world: World, sub_id: str) -> list[tuple[str, int]]:
    items = _stripe_sub(world, sub_id)["items"]["data"]
    return sorted((item["price"]["id"], item["quantity"]) for item in items)


def _refunded(world: World, sub_id: str) -> int:
    """What the fake Stripe refunded of the subscription's charges."""
    state = world.stripe.state
    return sum(
        state.charges.objects[state.charge_by_invoice[invoice_id]]["amount_refunded"]
        for invoice_id in state.invoices_by_subscription.get(sub_id, [])
        if invoice_id in state.charge_by_invoice
    )


def _endings_sent(member: Member) -> list[str]:
    return list(
        Notification.objects.filter(member=member, kind__in=ENDINGS).values_list("kind", flat=True)
    )


def _member(world: World, email: str, *, company: bool = False) -> Member:
    """A paying Lord (an individual plan, or the only seat of a company plan) logged in."""
    if company:
        _team, member = subscribe_company(world, email, "Camelot Ltd", owner_seats=1, team_seats=0)
    else:
        member = subscribe_individual(world, email)
    member = world.link(member, email.split("@")[0], role="lord")
    world.client.force_login(member.user)
    return member


def _move_to_company(world: World, member: Member, key: str = "price_owner_seat") -> str:
    """Buy a company plan from the company page; returns the Checkout session id."""
    response = world.client.post(
        reverse("billing:company"),
        {"company_name": "Camelot Ltd", "owner_seats": 1, "team_seats": 1, "price": key},
    )
    assert response.status_code == 302, response.content.decode()
    return response["Location"].rstrip("/").rsplit("/", 1)[-1]


def _move_to_individual(world: World, key: str = "price_individual") -> str:
    response = world.client.post(reverse("billing:checkout_individual"), {"price": key})
    assert response.status_code == 302
    assert "/checkout/" in response["Location"], response["Location"]
    return response["Location"].rstrip("/").rsplit("/", 1)[-1]


# --- monthly ↔ yearly -----------------------------------------------------------------------


def test_a_member_moves_to_the_yearly_price_and_pays_only_the_difference(world):
    yearly = yearly_prices()
    member = _member(world, "gawain@example.org")
    sub_id = member.subscription_id

    response = world.client.post(reverse("billing:plan_change"), {"price": yearly["individual"]})
    world.deliver_new()

    assert response.status_code == 302
    assert _prices(world, sub_id) == [(yearly["individual"], 1)]
    sub = _stripe_sub(world, sub_id)
    invoice = world.stripe.state.get_invoice(sub["latest_invoice"])
    # $990 a year less the unused month already paid ($99), invoiced and paid at once.
    assert invoice["billing_reason"] == "subscription_update"
    assert invoice["status"] == "paid"
    assert 99000 - 9900 <= invoice["amount_paid"] < 99000
    member.refresh_from_db()
    assert member.subscription_id == sub_id and member_is_entitled(member)
    assert world.roles(member) == ["lord"] and _endings_sent(member) == []
    page = world.client.get(reverse("billing:dashboard")).content.decode()
    assert f'value="{yearly["individual"]}" checked> Individual membership: $990.00 per year' in (
        page
    )
    assert "<dt>Price</dt><dd>$990.00 per year</dd>" in page
    assert AuditLog.objects.filter(action=AuditAction.BILLING_PLAN_CHANGED).count() == 1


def test_with_one_option_on_sale_there_is_no_switch_only_the_move(world):
    _member(world, "lucan@example.org")

    page = world.client.get(reverse("billing:dashboard")).content.decode()

    assert "Change your plan" in page and "Move to a company plan" in page
    assert "Change plan</button>" not in page

    Plan.objects.filter(kind=Plan.Kind.COMPANY).update(visible=False)  # no company plan on sale
    page = world.client.get(reverse("billing:dashboard")).content.decode()
    assert "Change your plan" not in page  # nothing else to buy


def test_the_same_plan_again_or_a_declined_card_changes_nothing(world):
    yearly = yearly_prices()
    member = _member(world, "agravain@example.org")
    sub_id = member.subscription_id

    same = world.client.post(
        reverse("billing:plan_change"), {"price": "price_individual"}, follow=True
    )
    assert "That is the plan you have already." in same.content.decode()

    world.stripe.state.decline_payments(1)  # the card on file is declined
    declined = world.client.post(
        reverse("billing:plan_change"), {"price": yearly["individual"]}, follow=True
    )
    world.deliver_new()

    assert "Your card was declined, so your plan was not changed." in declined.content.decode()
    assert _prices(world, sub_id) == [("price_individual", 1)]
    assert _stripe_sub(world, sub_id)["status"] == "active"
    assert not AuditLog.objects.filter(action=AuditAction.BILLING_PLAN_CHANGED).exists()


def test_a_team_owner_moves_both_seat_prices_and_keeps_every_seat(world):
    yearly = yearly_prices()
    team, owner = subscribe_company(world, "lot@example.org", "Orkney", owner_seats=2, team_seats=3)
    world.client.force_login(owner.user)
    knight = seat_member(team, SeatTier.TEAM, "gareth@example.org")

    world.client.post(reverse("billing:plan_change"), {"price": yearly["owner"]})
    world.deliver_new()

    assert _prices(world, team.subscription_id) == sorted(
        [(yearly["owner"], 2), (yearly["team"], 3)]
    )
    team.refresh_from_db()
    assert (team.owner_seats, team.team_seats) == (2, 3)
    knight.refresh_from_db()
    assert knight.team_id == team.pk and member_is_entitled(knight)

    world.client.force_login(knight.user)
    refused = world.client.post(
        reverse("billing:plan_change"), {"price": "price_owner_seat"}, follow=True
    )
    assert "Billing for your seat is managed by your team" in refused.content.decode()
    assert _prices(world, team.subscription_id)[0][0] in yearly.values()


# --- individual ↔ company -------------------------------------------------------------------


def test_an_individual_moves_to_a_company_plan_without_a_gap_or_paying_twice(world):
    Plan.objects.filter(kind=Plan.Kind.COMPANY).update(trial_days=14)
    member = _member(world, "percival@example.org")
    old_sub = member.subscription_id

    page = world.client.get(reverse("billing:company")).content.decode()
    assert "Your individual plan moves to this company plan" in page
    session_id = _move_to_company(world, member)
    session = world.stripe.state.checkout_sessions.objects[session_id]
    assert session["metadata"]["replaces"] == old_sub
    # Still entitled by the individual plan while the company plan is not paid.
    world.deliver_new()
    member.refresh_from_db()
    assert member.subscription_id == old_sub and member_is_entitled(member)

    pay_checkout(world.stripe, session_id, email=member.user.email)
    world.deliver_new()

    member.refresh_from_db()
    team = Team.objects.get(primary_owner=member)
    assert member.team_id == team.pk and member.seat_tier == SeatTier.OWNER
    assert member.subscription_id == "" and member_is_entitled(member)
    new_sub = _stripe_sub(world, team.subscription_id)
    assert new_sub["status"] == "active"  # a move is not a second free trial
    assert _stripe_sub(world, old_sub)["status"] == "canceled"
    # The unused part of the month paid for comes back (a few seconds of it were used).
    assert 9800 <= _refunded(world, old_sub) <= 9900
    assert world.roles(member) == ["lord"] and _endings_sent(member) == []
    assert Notification.objects.filter(member=member, kind="welcome").count() == 1
    replaced = AuditLog.objects.get(action=AuditAction.SUBSCRIPTION_REPLACED)
    assert replaced.details["replaced_by"] == team.subscription_id

    # Every event of the move again, as a replay would: nothing changes, nothing is refunded.
    for event in recorded_events(world.stripe):
        assert deliver(world.client, event).status_code == 200
    member.refresh_from_db()
    assert member.team_id == team.pk and _refunded(world, old_sub) <= 9900
    assert AuditLog.objects.filter(action=AuditAction.SUBSCRIPTION_REPLACED).count() == 1


def test_the_old_plan_is_cancelled_only_once_the_move_is_committed(world):
    """Stripe announces the cancellation at once: a worker applying it while the move is not
    committed would see a member whose only plan ended, and remove them."""
    member = _member(world, "lamorak@example.org")
    old_sub = member.subscription_id
    pay_checkout(world.stripe, _move_to_company(world, member), email=member.user.email)
    completed = recorded_events(world.stripe, ("checkout.session.completed",))[-1]

    with transaction.atomic():
        checkout_completed(session=completed["data"]["object"])
        assert _stripe_sub(world, old_sub)["status"] == "active"

    assert _stripe_sub(world, old_sub)["status"] == "canceled"
    world.deliver_new()
    member.refresh_from_db()
    assert member.team is not None and member_is_entitled(member)
    assert world.roles(member) == ["lord"] and _endings_sent(member) == []


def test_a_payment_refunded_already_is_not_refunded_twice_and_the_move_goes_on(world):
    member = _member(world, "tristan@example.org")
    old_sub = member.subscription_id
    world.stripe.state.refund(old_sub)  # staff refunded the whole payment in Stripe
    world.deliver_new()

    pay_checkout(world.stripe, _move_to_company(world, member), email=member.user.email)
    world.deliver_new()

    member.refresh_from_db()
    assert member.team is not None and member_is_entitled(member)
    assert _stripe_sub(world, old_sub)["status"] == "canceled"
    assert _refunded(world, old_sub) == 9900  # the one full refund, nothing more
    replaced = AuditLog.objects.get(action=AuditAction.SUBSCRIPTION_REPLACED)
    assert replaced.details["refunded"] == 0


def test_a_cancellation_that_failed_after_the_refund_is_retried_without_refunding_again(
    world, monkeypatch
):
    """The unused time was refunded, then Stripe failed the cancellation. The retry a day
    later works out a smaller unused share: it must find the refund already made (in Stripe,
    not by an idempotency key that lasts 24 hours) and only cancel."""
    member = _member(world, "dinadan@example.org")
    old_sub = member.subscription_id
    world.stripe.state.add_fault("/v1/subscriptions/", status=503, count=50, method="DELETE")
    pay_checkout(world.stripe, _move_to_company(world, member), email=member.user.email)
    world.deliver_new()
    assert _stripe_sub(world, old_sub)["status"] == "active"  # the task is to retry
    refunded = _refunded(world, old_sub)
    assert 9800 <= refunded <= 9900
    world.stripe.state.clear_faults()
    day_later = time.time() + 86400
    monkeypatch.setattr("billing.plan_change.time.time", lambda: day_later)

    replaced_subscription_end(
        subscription_id=old_sub,
        replaced_by=Team.objects.get(primary_owner=member).subscription_id,
        target=member,
    )

    assert _stripe_sub(world, old_sub)["status"] == "canceled"
    assert _refunded(world, old_sub) == refunded
    replaced = AuditLog.objects.get(action=AuditAction.SUBSCRIPTION_REPLACED)
    assert replaced.details["refunded"] == refunded


def test_an_owner_alone_on_the_team_moves_back_to_an_individual_plan(world):
    member = _member(world, "bors@example.org", company=True)
    team = member.team
    team_sub = team.subscription_id

    page = world.client.get(reverse("billing:dashboard")).content.decode()
    assert "Move to an individual plan" in page
    session_id = _move_to_individual(world)
    pay_checkout(world.stripe, session_id, email=member.user.email)
    world.deliver_new()

    member.refresh_from_db()
    team.refresh_from_db()
    assert member.team_id is None and member.subscription_id not in ("", team_sub)
    assert member_is_entitled(member) and member.introduced_at is not None
    assert team.cancelled_at is not None
    assert _stripe_sub(world, team_sub)["status"] == "canceled"
    assert 0 < _refunded(world, team_sub) <= 9900
    assert world.roles(member) == ["lord"] and _endings_sent(member) == []


def test_an_owner_with_others_on_the_team_cannot_move_to_an_individual_plan(world):
    member = _member(world, "ector@example.org", company=True)
    seat_member(member.team, SeatTier.OWNER, "kay@example.org")

    page = world.client.get(reverse("billing:dashboard")).content.decode()
    response = world.client.post(
        reverse("billing:checkout_individual"), {"price": "price_individual"}, follow=True
    )

    assert "Move to an individual plan" not in page
    assert "revoke their seats before moving" in response.content.decode()
    assert not world.stripe.state.checkout_sessions.objects or all(
        s["metadata"].get("plan_type") == "company"
        for s in world.stripe.state.checkout_sessions.objects.values()
    )


def test_a_seat_claimed_before_the_move_is_paid_keeps_the_team(world):
    """Decided again when the payment lands: the team gained a member meanwhile, so the new
    individual plan is the duplicate (cancelled, for staff to refund), and nobody loses access."""
    member = _member(world, "lionel@example.org", company=True)
    team_sub = member.team.subscription_id
    session_id = _move_to_individual(world)
    knight = seat_member(member.team, SeatTier.TEAM, "elyan@example.org")

    pay_checkout(world.stripe, session_id, email=member.user.email)
    world.deliver_new()

    member.refresh_from_db()
    knight.refresh_from_db()
    assert member.team is not None and member.team.subscription_id == team_sub
    assert _stripe_sub(world, team_sub)["status"] == "active"
    assert member_is_entitled(member) and member_is_entitled(knight)
    assert AuditLog.objects.filter(action="duplicate_subscription_cancelled").count() == 1


def test_a_plan_with_a_payment_problem_is_settled_before_a_move(world):
    member = _member(world, "dagonet@example.org")
    world.fail_renewal(member.subscription_id)

    response = world.client.post(
        reverse("billing:company"),
        {"company_name": "Camelot Ltd", "owner_seats": 1, "team_seats": 0},
    )
    switch = world.client.post(
        reverse("billing:plan_change"), {"price": "price_individual"}, follow=True
    )

    assert response.status_code == 400
    assert "update your payment method before changing" in response.content.decode()
    assert "update your payment method before changing" in switch.content.decode()


def test_a_plan_with_a_disputed_payment_waits_for_the_dispute(world):
    member = _member(world, "pellinore@example.org")
    world.stripe.state.open_dispute(member.subscription_id)
    world.deliver_new()

    page = world.client.get(reverse("billing:dashboard")).content.decode()
    response = world.client.post(
        reverse("billing:company"),
        {"company_name": "Camelot Ltd", "owner_seats": 1, "team_seats": 0},
    )

    assert "Change your plan" not in page
    assert response.status_code == 400
    assert "it can be changed once the dispute is closed" in response.content.decode()
    assert _stripe_sub(world, member.subscription_id)["status"] == "active"


# --- every order of the move's events -------------------------------------------------------

_emails = itertools.count()


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), to_company=st.booleans())
def test_any_order_of_a_moves_events_keeps_access_and_refunds_once(world, data, to_company):
    n = next(_emails)
    member = _member(world, f"m{n}@example.org", company=not to_company)
    old_sub = member.subscription_id or member.team.subscription_id
    session_id = _move_to_company(world, member) if to_company else _move_to_individual(world)
    pay_checkout(world.stripe, session_id, email=member.user.email)

    delivered: list[dict[str, Any]] = []
    for _round in range(3):  # the move's events, then those its handling caused, then replays
        fresh = [e for e in recorded_events(world.stripe) if e["id"] not in world.seen]
        world.seen.update(e["id"] for e in fresh)
        pool = fresh + delivered
        for index in data.draw(deliveries(len(pool)), label="order"):
            assert deliver(world.client, pool[index]).status_code == 200
            member.refresh_from_db()
            assert member_is_entitled(member), pool[index]["type"]
        delivered += fresh

    member.refresh_from_db()
    assert _stripe_sub(world, old_sub)["status"] == "canceled"
    assert (member.team_id is not None) == to_company
    assert 0 < _refunded(world, old_sub) <= 9900
    assert world.roles(member) == ["lord"] and _endings_sent(member) == []
