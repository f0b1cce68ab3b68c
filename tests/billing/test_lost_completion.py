"""A paid Checkout whose ``checkout.session.completed`` never arrived (every retry failed, or
the endpoint was down for Stripe's three days of retries): the buyer paid and holds nothing.

Every other event of the purchase is delivered, so the subscription is mirrored but nobody holds
it. The daily reconciliation reads every subscription in Stripe: one our Checkout created (its
metadata names the member or team) that no member or team holds is reported, and fixing links
it through the completion's own path, deciding from the current state as the event would have.
A plan a move replaced that is still live (its ending task gave up) is reported and ended.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from djstripe.models import Subscription

from billing.entitlement import member_is_entitled
from billing.services import checkout_recover
from gateway.reconciliation import reconcile
from members.models import Member, SeatTier, Team
from ops.models import AuditAction, AuditLog, Notification, ReconciliationRun
from tests.journeys import World, subscribe_individual
from tests.personas import buyer
from tests.providers import deliver, pay_checkout, recorded_events

pytestmark = pytest.mark.django_db(transaction=True)

COMPLETED = "checkout.session.completed"


def _deliver_all_but_completions(world: World) -> list[dict[str, Any]]:
    """Deliver the new events except the completions; returns the completions held back."""
    held_back = []
    for event in recorded_events(world.stripe):
        if event["id"] in world.seen:
            continue
        world.seen.add(event["id"])
        if event["type"] == COMPLETED:
            held_back.append(event)
            continue
        assert deliver(world.client, event).status_code == 200
    return held_back


def _buy(world: World, member: Member, *, company: str = "", team_seats: int = 1) -> None:
    """Buy through the site and pay on the fake's hosted Checkout page."""
    pay_checkout(world.stripe, _start(world, member, company, team_seats), email=member.user.email)


def _start(world: World, member: Member, company: str = "", team_seats: int = 1) -> str:
    """Start a Checkout from the site; returns its session id."""
    world.client.force_login(member.user)
    if company:
        form = {"company_name": company, "owner_seats": 1, "team_seats": team_seats}
        response = world.client.post(reverse("billing:company"), form)
    else:
        response = world.client.post(reverse("billing:checkout_individual"))
    assert response.status_code == 302, response.content.decode()
    return response["Location"].rstrip("/").rsplit("/", 1)[-1]


def _findings(run: ReconciliationRun) -> list[tuple[str, str]]:
    return [(f["kind"], f.get("subscription_id", "")) for f in run.findings]


def _status(world: World, sub_id: str) -> str:
    return str(world.stripe.state.get_subscription(sub_id)["status"])


def test_an_individual_whose_completion_was_lost_is_linked_by_reconciliation(world):
    member = world.link(buyer("tristan@example.org"), "tristan", role=None)
    _buy(world, member)
    lost = _deliver_all_but_completions(world)
    assert len(lost) == 1
    member.refresh_from_db()
    sub_id = lost[0]["data"]["object"]["subscription"]
    # Paid, and locked out: nobody holds the subscription.
    assert member.subscription_id == "" and not member_is_entitled(member)

    report = reconcile(fix=False, dry_run=False, trigger="test")
    assert report.status == ReconciliationRun.Status.DRIFT
    assert ("subscription_not_linked", sub_id) in _findings(report)
    finding = next(f for f in report.findings if f["kind"] == "subscription_not_linked")
    assert finding["member_id"] == member.pk
    member.refresh_from_db()
    assert member.subscription_id == ""  # a report changes nothing

    fixed = reconcile(fix=True, dry_run=False, trigger="test")
    assert ("link_subscription", True) in [(f["action"], f["ok"]) for f in fixed.fixes]
    member.refresh_from_db()
    assert member.subscription_id == sub_id and member_is_entitled(member)
    assert world.roles(member) == ["lord"]
    assert Notification.objects.filter(member=member, kind="welcome").count() == 1
    assert _status(world, sub_id) == "active"  # linked, not cancelled as a duplicate

    # The completion turns up after all (a manual resend): nothing changes, no second welcome.
    assert deliver(world.client, lost[0]).status_code == 200
    member.refresh_from_db()
    assert member.subscription_id == sub_id
    assert Notification.objects.filter(member=member, kind="welcome").count() == 1
    assert checkout_recover(subscription_id=sub_id) == ""  # held now: nothing to repair
    assert AuditLog.objects.filter(action=AuditAction.CHECKOUT_COMPLETED).count() == 1
    again = reconcile(fix=True, dry_run=False, trigger="test")
    assert "subscription_not_linked" not in str(_findings(again))


def test_reconciling_one_member_finds_and_links_their_lost_purchase(world):
    """Support's first step for "I paid but have no access": ``reconcile --member ID --fix``."""
    member = world.link(buyer("lamorak@example.org"), "lamorak", role=None)
    _buy(world, member)
    sub_id = _deliver_all_but_completions(world)[0]["data"]["object"]["subscription"]

    run = reconcile(fix=True, dry_run=False, member_id=member.pk, trigger="test")

    assert ("subscription_not_linked", sub_id) in _findings(run)
    member.refresh_from_db()
    assert member.subscription_id == sub_id and member_is_entitled(member)
    assert world.roles(member) == ["lord"]


def test_a_company_whose_completion_was_lost_gets_its_team_linked(world):
    purchaser = world.link(buyer("arthur@example.org"), "arthur", role=None)
    _buy(world, purchaser, company="Camelot Ltd", team_seats=2)
    lost = _deliver_all_but_completions(world)
    sub_id = lost[0]["data"]["object"]["subscription"]
    team = Team.objects.get(name="Camelot Ltd")
    assert not team.subscription_id and not member_is_entitled(purchaser)

    run = reconcile(fix=True, dry_run=False, trigger="test")

    finding = next(f for f in run.findings if f["kind"] == "subscription_not_linked")
    assert (finding["subscription_id"], finding["team_id"]) == (sub_id, team.pk)
    team.refresh_from_db()
    purchaser.refresh_from_db()
    assert team.subscription_id == sub_id and (team.owner_seats, team.team_seats) == (1, 2)
    assert purchaser.team_id == team.pk and purchaser.seat_tier == SeatTier.OWNER
    assert member_is_entitled(purchaser) and world.roles(purchaser) == ["lord"]


def test_a_move_whose_completion_was_lost_is_finished_by_reconciliation(world):
    member = world.link(subscribe_individual(world, "percival@example.org"), "perci", role="lord")
    old_sub = member.subscription_id
    _buy(world, member, company="Camelot Ltd")
    lost = _deliver_all_but_completions(world)
    new_sub = lost[0]["data"]["object"]["subscription"]
    # Both plans live: the old one still entitles the member, the new one is held by nobody.
    assert _status(world, old_sub) == _status(world, new_sub) == "active"

    run = reconcile(fix=True, dry_run=False, trigger="test")

    assert ("subscription_not_linked", new_sub) in _findings(run)
    assert ("subscription_not_linked", old_sub) not in _findings(run)
    member.refresh_from_db()
    team = Team.objects.get(subscription_id=new_sub)
    assert member.team_id == team.pk and member.subscription_id == ""
    assert member_is_entitled(member) and world.roles(member) == ["lord"]
    assert _status(world, old_sub) == "canceled"
    assert AuditLog.objects.filter(action=AuditAction.SUBSCRIPTION_REPLACED).count() == 1
    world.deliver_new()  # the old plan's cancellation arrives: the member stays on the new one
    member.refresh_from_db()
    assert member_is_entitled(member) and world.roles(member) == ["lord"]
    again = reconcile(fix=True, dry_run=False, trigger="test")
    assert again.status == ReconciliationRun.Status.CLEAN, again.findings


def test_a_lost_move_that_can_no_longer_replace_the_old_plan_is_left_to_staff(world):
    """A day late, the move's old plan has a failed renewal: the move would now be cancelled
    as a duplicate. A repair that late cancels nothing paid: it reports why, for staff."""
    member = world.link(subscribe_individual(world, "bedivere@example.org"), "bedi", role="lord")
    old_sub = member.subscription_id
    _buy(world, member, company="Camelot Ltd")
    new_sub = _deliver_all_but_completions(world)[0]["data"]["object"]["subscription"]
    world.fail_renewal(old_sub)

    run = reconcile(fix=True, dry_run=False, trigger="test")

    [fix] = [f for f in run.fixes if f["action"] == "link_subscription"]
    assert fix["ok"] is False and "by hand" in fix["error"], fix
    assert _status(world, new_sub) == "active" and _status(world, old_sub) == "past_due"
    member.refresh_from_db()
    assert member.subscription_id == old_sub and member.team_id is None
    assert not AuditLog.objects.filter(action=AuditAction.DUPLICATE_SUBSCRIPTION_CANCELLED)


def test_a_replaced_plan_left_live_is_reported_and_ended(world, monkeypatch):
    member = world.link(subscribe_individual(world, "gawain@example.org"), "gawain", role="lord")
    old_sub = member.subscription_id
    # The task that ends the old plan gives up (Stripe unreachable for all its attempts).
    monkeypatch.setattr("billing.services.replaced_subscription_end_request", _gave_up)
    _buy(world, member, company="Orkney Ltd", team_seats=0)
    world.deliver_new()
    monkeypatch.undo()
    member.refresh_from_db()
    assert member.subscription_id == "" and _status(world, old_sub) == "active"

    report = reconcile(fix=False, dry_run=False, trigger="test")
    assert _findings(report) == [("replaced_subscription_live", old_sub)]
    assert _status(world, old_sub) == "active"

    # Stripe still refuses cancellations: the run records the failed fix and goes on.
    world.stripe.state.add_fault("/v1/subscriptions/", status=503, count=50, method="DELETE")
    failed = reconcile(fix=True, dry_run=False, trigger="test")
    assert failed.status == ReconciliationRun.Status.DRIFT
    [fix] = failed.fixes
    assert (fix["action"], fix["ok"]) == ("end_replaced_subscription", False)
    assert "LifecycleError" in fix["error"]
    world.stripe.state.clear_faults()
    # Meanwhile the old plan's own update was lost too: the mirror is stale.
    mirrored = Subscription.objects.get(id=old_sub).stripe_data
    Subscription.objects.filter(id=old_sub).update(stripe_data={**mirrored, "status": "past_due"})

    fixed = reconcile(fix=True, dry_run=False, trigger="test")
    assert ("end_replaced_subscription", True) in [(f["action"], f["ok"]) for f in fixed.fixes]
    assert _status(world, old_sub) == "canceled"
    # The page read before the fix is not re-applied over what the fix did.
    assert Subscription.objects.get(id=old_sub).stripe_data["status"] == "canceled"
    replaced = AuditLog.objects.get(action=AuditAction.SUBSCRIPTION_REPLACED)
    assert replaced.details["subscription_id"] == old_sub and replaced.details["refunded"] > 0
    world.deliver_new()
    member.refresh_from_db()
    assert member_is_entitled(member) and world.roles(member) == ["lord"]
    assert (
        reconcile(fix=True, dry_run=False, trigger="test").status == ReconciliationRun.Status.CLEAN
    )


def _gave_up(**_kwargs: Any) -> None:
    return None


def test_subscriptions_the_gateway_did_not_create_or_that_ended_are_not_reported(world):
    # Two tabs, both paid: the second subscription is cancelled as a duplicate at once.
    member = buyer("kay@example.org")
    sessions = [_start(world, member), _start(world, member)]
    for session_id in sessions:
        pay_checkout(world.stripe, session_id, email="kay@example.org")
    world.deliver_new()
    assert len(world.stripe.state.subscriptions.objects) == 2
    # A subscription made in the Stripe dashboard, without our metadata.
    customer = world.stripe.state.create_customer({"email": "walk-in@example.org"})
    world.stripe.state.create_subscription(
        {"customer": customer["id"], "items": [{"price": "price_individual", "quantity": 1}]}
    )

    run = reconcile(fix=False, dry_run=False, trigger="test")

    assert not [k for k, _ in _findings(run) if "subscription" in k], run.findings
