"""Property: after any ending, every member's stored state is reachable again (SPEC §2a).

Hypothesis builds a team of random members (owners and seats, with or without email, linked
or not, some former individual subscribers), drives its subscription through a random series
of Stripe statuses that ends in one that no longer entitles it — or lets the Debtor period run
out — and then checks that every former member is free: on no team, no plan of their own that
still holds them, able to take a seat of another team as the same member, and a Discord-only
row able to hand its Discord account to a fresh purchase. Stripe's answers are the mirrored
subscription (no HTTP), the services are the real ones.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone
from djstripe.models import Subscription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.checkout import member_has_live_subscription
from billing.lifecycle import episode_remove
from billing.models import FailureEpisode
from billing.services import SubscriptionSnapshot, subscription_apply
from billing.teams import seat_claim
from discordsync.services import discord_link, discord_only_and_empty
from members.models import DiscordUser, Invite, Member, SeatTier, Team, User
from ops.models import GatewayConfig
from tests import personas

pytestmark = pytest.mark.django_db

NOT_ENTITLING = ["canceled", "unpaid", "incomplete_expired", "paused"]
_ids = itertools.count(1)


@dataclass(frozen=True)
class Seat:
    tier: str
    email: bool
    linked: bool
    former_individual: bool


seats = st.lists(
    st.builds(
        Seat,
        tier=st.sampled_from([SeatTier.OWNER, SeatTier.TEAM]),
        email=st.booleans(),
        linked=st.booleans(),
        former_individual=st.booleans(),
    ),
    max_size=4,
)
# Statuses the team's subscription passes through; the last one ends the team (or "removal":
# the Debtor period runs out with cancel_stripe_on_removal off, so Stripe keeps it).
journeys = st.tuples(
    st.lists(st.sampled_from(["active", "past_due", *NOT_ENTITLING]), max_size=4),
    st.sampled_from([*NOT_ENTITLING, "removal"]),
)


def _items(owner: int, team: int) -> dict:
    return {
        "data": [
            {"price": {"id": django_settings.STRIPE_OWNER_SEAT_PRICE_ID}, "quantity": owner},
            {"price": {"id": django_settings.STRIPE_TEAM_SEAT_PRICE_ID}, "quantity": team},
        ]
    }


def _apply(team: Team, status: str) -> None:
    sub = Subscription.objects.get(id=team.subscription_id)
    previous = dict(sub.stripe_data)
    sub.stripe_data = {**previous, "status": status, "items": _items(5, 5)}
    sub.save()
    subscription_apply(snapshot=SubscriptionSnapshot(subscription=sub, previous=previous))


def _build(layout: list[Seat]) -> Team:
    n = next(_ids)
    team = Team.objects.create(
        name=f"Team {n}", subscription_id=f"sub_t{n}", owner_seats=5, team_seats=5
    )
    personas.subscription(team.subscription_id, "active")
    Subscription.objects.filter(id=team.subscription_id).update(
        stripe_data={"id": team.subscription_id, "status": "active", "items": _items(5, 5)}
    )
    owner = personas.member(f"owner{n}", status=None, team=team, seat_tier=SeatTier.OWNER)
    Member.objects.filter(pk=owner.pk).update(paid_at=timezone.now())
    team.primary_owner = owner
    team.save(update_fields=["primary_owner"])
    for i, spec in enumerate(layout):
        user = User.objects.create_user(f"p{n}-{i}@example.com" if spec.email else None, None)
        sub_id = ""
        if spec.former_individual:
            sub_id = f"sub_i{n}_{i}"
            personas.subscription(sub_id, "canceled")
        Member.objects.create(
            user=user,
            team=team,
            seat_tier=spec.tier,
            subscription_id=sub_id,
            discord_id=f"{n}{i:03d}" if spec.linked else None,
            paid_at=timezone.now(),
        )
    return team


def _end(team: Team, journey: tuple[list[str], str]) -> None:
    path, last = journey
    for status in path:
        _apply(team, status)
    if last != "removal":
        _apply(team, last)
        return
    _apply(team, "past_due")
    team.refresh_from_db()
    if team.cancelled_at is not None:  # an earlier status ended it; settle it, then fail again
        _apply(team, "active")
    now = timezone.now()
    episode = FailureEpisode.objects.create(
        subscription_id=team.subscription_id,
        team=team,
        opened_at=now - timedelta(days=40),
        grace_ends_at=now - timedelta(days=38),
        debtor_at=now - timedelta(days=38),
        removal_due_at=now - timedelta(days=1),
    )
    assert episode_remove(episode_id=episode.pk, now=now)


def _free(member: Member, other: Team) -> None:
    """Everything a former member may do next works, as the same member."""
    member = Member.objects.select_related("user", "team").get(pk=member.pk)
    assert member.team_id is None and member.seat_tier == SeatTier.INDIVIDUAL
    assert member.cancelled_at is not None or member.paid_at is None
    # Checkout's guard: no plan that still grants or owes access, no team.
    assert not member_has_live_subscription(member)
    if not member.discord_id:
        return
    person = DiscordUser(id=member.discord_id, username="someone", avatar="")
    with transaction.atomic():
        invite = Invite.objects.create(team=other, tier=SeatTier.TEAM, token=f"t{next(_ids)}")
        claimed = seat_claim(invite_id=invite.pk, discord_user=person, now=timezone.now())
        assert claimed.pk == member.pk and claimed.team_id == other.pk
        transaction.set_rollback(True)
    if discord_only_and_empty(member):
        with transaction.atomic():
            buyer = personas.member(f"buyer{next(_ids)}")
            linked = discord_link(member_id=buyer.pk, discord_user=person, now=timezone.now())
            assert list(Member.objects.filter(discord_id=person.id)) == [linked]
            transaction.set_rollback(True)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(layout=seats, journey=journeys)
def test_every_member_is_free_again_after_any_team_ending(db, layout, journey):
    with transaction.atomic():
        GatewayConfig.objects.update_or_create(pk=1, defaults={"cancel_stripe_on_removal": False})
        team = _build(layout)
        members = list(Member.objects.filter(team=team))
        other = _build([])
        _end(team, journey)
        team.refresh_from_db()
        assert team.cancelled_at is not None
        assert not Member.objects.filter(team=team).exists()
        assert not Invite.objects.filter(team=team, revoked_at__isnull=True).exists()
        for member in members:
            _free(member, other)
        transaction.set_rollback(True)


def test_the_data_migration_detaches_members_stranded_on_ended_teams(db):
    import importlib

    from django.apps import apps

    from ops.models import AuditLog

    migration = importlib.import_module("members.migrations.0002_detach_members_of_ended_teams")
    team = _build([Seat(SeatTier.TEAM, email=False, linked=True, former_individual=False)])
    live = _build([Seat(SeatTier.TEAM, email=True, linked=True, former_individual=False)])
    Team.objects.filter(pk=team.pk).update(cancelled_at=timezone.now())  # ended the old way
    stranded = list(Member.objects.filter(team=team))

    migration.detach(apps, None)

    assert not Member.objects.filter(team=team).exists()
    assert Member.objects.filter(team=live).count() == 2
    other = _build([])
    for member in stranded:
        _free(member, other)
    assert AuditLog.objects.filter(action="team_member_detached").count() == len(stranded)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    layout=seats,
    owner_paid=st.integers(min_value=0, max_value=5),
    team_paid=st.integers(min_value=0, max_value=5),
    owner_latest=st.booleans(),
)
def test_claimed_seats_never_exceed_paid_seats_after_a_reduction(
    db, layout, owner_paid, team_paid, owner_latest
):
    """Any claimed layout, any new quantities: the most recent claims beyond the paid count
    are released, nobody else, never the primary owner; each released member is told."""
    from ops.models import Notification

    with transaction.atomic():
        team = _build(layout)
        # Claims in a known order: the later the pk, the more recent the claim.
        base = timezone.now() - timedelta(days=1)
        for i, member in enumerate(Member.objects.filter(team=team).order_by("pk")):
            Member.objects.filter(pk=member.pk).update(paid_at=base + timedelta(minutes=i))
        if owner_latest:  # the primary owner's seat may be the most recent one: still kept
            Member.objects.filter(pk=team.primary_owner_id).update(
                paid_at=base + timedelta(hours=1)
            )
        before = {m.pk: m for m in Member.objects.filter(team=team).select_related("user")}
        sub = Subscription.objects.get(id=team.subscription_id)
        previous = dict(sub.stripe_data)
        sub.stripe_data = {**previous, "items": _items(owner_paid, team_paid)}
        sub.save()
        subscription_apply(snapshot=SubscriptionSnapshot(subscription=sub, previous=previous))

        team.refresh_from_db()
        kept = {m.pk for m in Member.objects.filter(team=team)}
        released = set(before) - kept
        assert team.primary_owner_id in kept
        for tier, paid in ((SeatTier.OWNER, owner_paid), (SeatTier.TEAM, team_paid)):
            holders = [pk for pk, m in before.items() if m.seat_tier == tier]
            staying = [pk for pk in holders if pk in kept]
            floor = 1 if team.primary_owner_id in holders else 0
            assert len(staying) == min(len(holders), max(paid, floor))
            gone = [pk for pk in holders if pk not in kept]
            others = [pk for pk in staying if pk != team.primary_owner_id]
            assert not gone or not others or min(gone) > max(others)  # the most recent went
        for pk in released:
            member = Member.objects.get(pk=pk)
            assert member.team_id is None and member.seat_tier == SeatTier.INDIVIDUAL
            told = Notification.objects.filter(kind="seat_released", member_id=pk)
            expected = {
                c for c, r in (("dm", member.discord_id), ("email", member.user.email)) if r
            }
            assert set(told.values_list("channel", flat=True)) == expected
        owner_mails = Notification.objects.filter(kind="seats_released_owner")
        owners_with_email = Member.objects.filter(
            team=team, seat_tier=SeatTier.OWNER, user__email__isnull=False
        ).count()
        assert owner_mails.count() == (owners_with_email if released else 0)
        transaction.set_rollback(True)
