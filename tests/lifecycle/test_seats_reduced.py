"""Seats reduced below the claimed ones (SPEC §2a): the most recent claims beyond the paid
count are released at once; the primary owner never is. Through the fake Stripe (the owner
lowers a quantity) and the fake Discord."""

from __future__ import annotations

from datetime import timedelta

import pytest
import stripe
from django.conf import settings
from django.utils import timezone

from members.models import Member, SeatTier, Team
from ops.models import AuditLog
from tests.journeys import messages, seat, sent_once, subscribe_company

pytestmark = pytest.mark.django_db(transaction=True)


def _claimed(world, team: Team, tier: str, name: str, minutes_ago: int) -> Member:
    member = seat(team, tier, f"{name}@acme.example")
    Member.objects.filter(pk=member.pk).update(
        paid_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    return world.link(member, name, role="knight" if tier == SeatTier.TEAM else "lord")


def _set_quantity(world, team: Team, price: str, quantity: int) -> None:
    items = stripe.SubscriptionItem.list(subscription=team.subscription_id)
    item = next(i for i in items.auto_paging_iter() if i.price.id == price)
    stripe.SubscriptionItem.modify(item.id, quantity=quantity, proration_behavior="none")
    world.deliver_new()


def test_the_most_recent_claims_beyond_the_paid_seats_are_released(world):
    team, owner = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=3)
    pat = world.link(owner, "pat", role="lord")
    ann = _claimed(world, team, SeatTier.TEAM, "ann", 30)
    bob = _claimed(world, team, SeatTier.TEAM, "bob", 20)
    cid = _claimed(world, team, SeatTier.TEAM, "cid", 10)

    _set_quantity(world, team, settings.STRIPE_TEAM_SEAT_PRICE_ID, 1)

    team.refresh_from_db()
    assert team.team_seats == 1
    assert list(Member.objects.filter(team=team, seat_tier=SeatTier.TEAM)) == [ann]
    for released in (bob, cid):
        released.refresh_from_db()
        assert released.team_id is None and released.seat_tier == SeatTier.INDIVIDUAL
        assert released.discord_id  # link kept: free to claim or buy again
        assert world.roles(released) is None  # roles removed and kicked
        sent_once("seat_released", released.discord_id)
        sent_once("seat_released", released.user.email)
    assert world.roles(ann) == ["knight"] and world.roles(pat) == ["lord"]
    report = sent_once("seats_released_owner", "pat@acme.example")
    assert report.context["released_names"] == "bob, cid"
    audited = AuditLog.objects.filter(action="seat_released").order_by("target_id")
    assert [int(row.target_id) for row in audited] == sorted([bob.pk, cid.pk])
    assert all(row.details["team_id"] == team.pk for row in audited)

    # The same state seen again (a replayed event) releases nobody else and says nothing more.
    world.deliver_new()
    from billing.services import subscription_apply, subscription_sync

    subscription_apply(snapshot=subscription_sync(subscription_id=team.subscription_id))
    assert Member.objects.filter(team=team).count() == 2
    assert len(messages("seats_released_owner")) == 1


def test_the_primary_owner_is_never_released(world):
    team, owner = subscribe_company(
        world, "pat@acme.example", "Acme Ltd", owner_seats=2, team_seats=1
    )
    pat = world.link(owner, "pat", role="lord")
    # The primary owner bought first; a later owner seat is the most recent claim.
    Member.objects.filter(pk=pat.pk).update(paid_at=timezone.now() + timedelta(minutes=5))
    dee = _claimed(world, team, SeatTier.OWNER, "dee", 10)

    _set_quantity(world, team, settings.STRIPE_OWNER_SEAT_PRICE_ID, 1)

    pat.refresh_from_db()
    dee.refresh_from_db()
    assert pat.team_id == team.pk and dee.team_id is None
    assert world.roles(pat) == ["lord"] and world.roles(dee) is None
    sent_once("seats_released_owner", "pat@acme.example")
    never = messages("seats_released_owner", "dee@acme.example")
    assert never == []
