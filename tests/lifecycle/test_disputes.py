"""Chargebacks (SPEC §2a) end to end: a dispute opened in the fake Stripe suspends access at
once (roles removed, not kicked), won restores it, lost ends the membership like a
cancellation; refunds are only audited."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from billing.entitlement import Access, member_access
from billing.models import Dispute
from members.models import SeatTier
from ops.models import AuditLog
from tests.journeys import (
    messages,
    never_sent,
    seat,
    sent_once,
    subscribe_company,
    subscribe_individual,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kay(world, settings):
    settings.ADMIN_EMAIL = "ops@example.org"
    member = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    world.discord.clear_requests()
    return member


def _open(world, kay) -> Dispute:
    opened = world.stripe.state.open_dispute(kay.subscription_id)
    world.deliver_new()
    return Dispute.objects.get(dispute_id=opened["id"])


def test_a_dispute_suspends_access_at_once_and_tells_member_and_staff(world, kay):
    dispute = _open(world, kay)

    assert dispute.closed_at is None and dispute.subscription_id == kay.subscription_id
    assert member_access(kay, dispute.opened_at) == Access.SUSPENDED
    assert world.roles(kay) == []  # managed role removed, still in the guild
    sent_once("dispute_opened", kay.discord_id)
    sent_once("dispute_opened", "kay@example.org")
    sent_once("dispute_staff", "ops@example.org")
    sent_once("dispute_staff", django_settings.DISCORD_ADMIN_CHANNEL_ID)
    assert AuditLog.objects.filter(action="dispute_opened").count() == 1
    world.client.force_login(kay.user)
    assert (
        "Access paused: payment disputed"
        in world.client.get(reverse("billing:dashboard")).content.decode()
    )

    # Evidence submitted: still open, nothing new for anyone.
    world.stripe.state.submit_dispute_evidence(dispute.dispute_id)
    world.deliver_new()
    assert world.roles(kay) == [] and len(messages("dispute_opened")) == 2

    world.stripe.state.close_dispute(dispute.dispute_id, won=True)
    world.deliver_new()

    dispute.refresh_from_db()
    assert dispute.outcome == Dispute.Outcome.WON and dispute.closed_at is not None
    assert world.roles(kay) == ["lord"]
    sent_once("dispute_won", kay.discord_id)
    never_sent("farewell", kay.discord_id)
    assert world.stripe_status(kay.subscription_id) == "active"


def test_a_lost_dispute_ends_the_membership_like_a_cancellation(world, kay):
    dispute = _open(world, kay)

    world.stripe.state.close_dispute(dispute.dispute_id, won=False)
    world.deliver_new()

    dispute.refresh_from_db()
    kay.refresh_from_db()
    assert dispute.outcome == Dispute.Outcome.LOST
    assert world.stripe_status(kay.subscription_id) == "canceled"
    assert kay.cancelled_at is not None
    assert world.roles(kay) is None  # farewell, roles removed, kicked
    sent_once("farewell", kay.discord_id)
    never_sent("dispute_won", kay.discord_id)
    assert len(messages("dispute_staff", "ops@example.org")) == 2  # opened, then lost


def test_a_replayed_dispute_event_changes_nothing(world, kay):
    dispute = _open(world, kay)
    [event] = world.stripe.state.events_of("charge.dispute.created")
    world.seen.discard(event["id"])
    from billing.models import StripeEventInbox

    StripeEventInbox.objects.filter(event_id=event["id"]).delete()
    world.deliver_new()

    assert Dispute.objects.get().pk == dispute.pk
    assert len(messages("dispute_opened", kay.discord_id)) == 1
    assert AuditLog.objects.filter(action="dispute_opened").count() == 1


def test_a_refund_is_audited_and_changes_nothing(world, kay):
    world.stripe.state.refund(kay.subscription_id, amount=500)
    world.deliver_new()

    entry = AuditLog.objects.get(action="charge_refunded")
    assert (entry.target_type, entry.target_id) == ("member", str(kay.pk))
    assert entry.details["amount_refunded"] == 500 and not entry.details["fully_refunded"]
    assert member_access(kay, entry.created_at) == Access.ENTITLED
    assert world.roles(kay) == ["lord"]
    assert not messages("farewell") and not messages("dispute_staff")


def test_a_dispute_on_a_team_payment_suspends_every_seat(world, settings):
    settings.ADMIN_EMAIL = "ops@example.org"
    team, owner = subscribe_company(world, "owner@example.org", "Camelot Ltd")
    owner = world.link(owner, "arthur", role="lord")
    knight = world.link(seat(team, SeatTier.TEAM, "gawain@example.org"), "gawain", role="knight")

    opened = world.stripe.state.open_dispute(team.subscription_id)
    world.deliver_new()

    assert world.roles(owner) == [] and world.roles(knight) == []  # suspended, not kicked
    sent_once("dispute_opened", "owner@example.org")  # the owner pays: email too
    sent_once("dispute_opened", knight.discord_id)
    never_sent("dispute_opened", "gawain@example.org")
    entry = AuditLog.objects.get(action="dispute_opened")
    assert (entry.target_type, entry.target_id) == ("team", str(team.pk))

    world.stripe.state.close_dispute(opened["id"], won=True)
    world.deliver_new()
    assert world.roles(owner) == ["lord"] and world.roles(knight) == ["knight"]


def test_a_dispute_after_the_membership_ended_only_tells_staff(world, kay):
    world.stripe.state.cancel(kay.subscription_id)
    world.deliver_new()
    kay.refresh_from_db()
    assert kay.cancelled_at is not None

    _open(world, kay)

    never_sent("dispute_opened", kay.discord_id)
    never_sent("dispute_opened", "kay@example.org")
    sent_once("dispute_staff", "ops@example.org")
