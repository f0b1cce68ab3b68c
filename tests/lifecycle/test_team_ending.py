"""Ending a team detaches every member (SPEC §2a): each can buy, start a company or claim again.

Through the fake Stripe (purchases, cancellations, failed renewals) and the fake Discord; the
two ways a team ends are Stripe ending the subscription and the Debtor period running out.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.checkout import checkout_company_start, checkout_individual_start
from billing.entitlement import member_is_entitled
from billing.teams import SeatError, seat_claim
from discordsync.services import LinkError, discord_link
from members.models import DiscordUser, Invite, Member, SeatTier, Team, User
from ops.models import AuditLog
from tests.journeys import seat, subscribe_company, subscribe_individual
from tests.providers import pay_checkout, start_individual_checkout

pytestmark = pytest.mark.django_db(transaction=True)

D = timedelta(days=1)


def _invite(team: Team, tier: str = SeatTier.TEAM) -> Invite:
    return Invite.objects.create(team=team, tier=tier, token=f"tok-{team.pk}-{tier}")


def _end_by_stripe(world, team: Team) -> None:
    world.stripe.state.cancel(team.subscription_id)
    world.deliver_new()


def _end_by_debtor_removal(world, team: Team) -> None:
    episode = world.fail_renewal(team.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 3 * D)  # Debtor
    world.tick(t0 + 33 * D)  # removal: cancelled in Stripe, members removed


ENDINGS = {"stripe": _end_by_stripe, "debtor_removal": _end_by_debtor_removal}


def _session_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_every_member_is_detached_when_the_team_ends(world, ending):
    team, purchaser = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    pat = world.link(purchaser, "pat", role="lord")
    tom = world.link(seat(team, SeatTier.TEAM, "tom@acme.example"), "tom", role="knight")
    ENDINGS[ending](world, team)
    team.refresh_from_db()
    assert team.cancelled_at is not None
    for member in (pat, tom):
        member.refresh_from_db()
        assert member.team_id is None and member.seat_tier == SeatTier.INDIVIDUAL
        assert member.cancelled_at is not None
        assert member.discord_id  # the Discord link is kept
        assert world.roles(member) is None
    detached = AuditLog.objects.filter(action="team_member_detached", details__team_id=team.pk)
    assert sorted(int(row.target_id) for row in detached) == sorted([pat.pk, tom.pk])
    assert not Invite.objects.filter(team=team, revoked_at__isnull=True).exists()


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_an_ex_owner_who_buys_an_individual_plan_gets_access(world, ending):
    team, purchaser = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=0)
    pat = world.link(purchaser, "pat", role="lord")
    ENDINGS[ending](world, team)
    pat.refresh_from_db()

    checkout_individual_start(member=pat)  # not refused
    session = start_individual_checkout(pat)
    pay_checkout(world.stripe, session.id, email="pat@acme.example")
    world.deliver_new()
    pat.refresh_from_db()
    assert pat.team_id is None and pat.cancelled_at is None
    assert member_is_entitled(pat, timezone.now())


def test_an_ex_owner_can_start_a_new_company(world):
    team, purchaser = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=0)
    _end_by_stripe(world, team)
    purchaser.refresh_from_db()

    url = checkout_company_start(
        member=purchaser, company_name="Acme Two", owner_seats=1, team_seats=1
    )
    pay_checkout(world.stripe, _session_id(url), email="pat@acme.example")
    world.deliver_new()
    purchaser.refresh_from_db()
    new_team = Team.objects.get(name="Acme Two")
    assert new_team.pk != team.pk and new_team.primary_owner_id == purchaser.pk
    assert purchaser.team_id == new_team.pk and purchaser.seat_tier == SeatTier.OWNER
    assert purchaser.cancelled_at is None
    assert member_is_entitled(purchaser, timezone.now())


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_an_ex_seat_member_can_claim_another_teams_seat(world, ending):
    team, _ = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    tom = world.link(seat(team, SeatTier.TEAM, "tom@acme.example"), "tom", role="knight")
    ENDINGS[ending](world, team)
    other, _ = subscribe_company(world, "ann@other.example", "Other Ltd", team_seats=1)

    claimed = seat_claim(
        invite_id=_invite(other).pk,
        discord_user=DiscordUser(id=tom.discord_id, username="tom", avatar=""),
        now=timezone.now(),
    )
    assert claimed.pk == tom.pk and claimed.team_id == other.pk
    assert member_is_entitled(claimed, timezone.now())


def test_a_discord_only_ex_seat_can_claim_again_as_the_same_member(world):
    team, _ = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    person = world.discord.add_user(username="gwen", in_guild=False, roles=[])
    gwen = DiscordUser(id=person["id"], username="gwen", avatar="")
    first = seat_claim(invite_id=_invite(team).pk, discord_user=gwen, now=timezone.now())
    assert first.user.email is None
    _end_by_stripe(world, team)
    other, _ = subscribe_company(world, "ann@other.example", "Other Ltd", team_seats=1)

    again = seat_claim(invite_id=_invite(other).pk, discord_user=gwen, now=timezone.now())
    assert again.pk == first.pk and again.team_id == other.pk
    assert Member.objects.filter(discord_id=gwen.id).count() == 1


def test_a_discord_only_ex_seat_can_link_the_discord_account_to_a_new_purchase(world):
    team, _ = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    person = world.discord.add_user(username="gwen", in_guild=False, roles=[])
    gwen = DiscordUser(id=person["id"], username="gwen", avatar="")
    seat_row = seat_claim(invite_id=_invite(team).pk, discord_user=gwen, now=timezone.now())
    _end_by_stripe(world, team)

    # The same person signs up with an email, buys the individual plan and links Discord.
    buyer = subscribe_individual(world, "gwen@example.org")
    linked = discord_link(member_id=buyer.pk, discord_user=gwen, now=timezone.now())
    assert linked.pk == buyer.pk and linked.discord_id == gwen.id
    # One person, one member: the empty Discord-only row is gone, its history is audited.
    assert list(Member.objects.filter(discord_id=gwen.id)) == [buyer]
    assert not Member.objects.filter(pk=seat_row.pk).exists()
    assert not User.objects.filter(pk=seat_row.user_id).exists()
    merged = AuditLog.objects.get(action="discord_only_member_merged")
    assert merged.target_id == str(buyer.pk)
    assert merged.details == {"merged_member_id": seat_row.pk, "discord_id": gwen.id}


def test_linking_never_takes_a_discord_account_from_a_member_who_holds_something(world):
    team, _ = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    person = world.discord.add_user(username="gwen", in_guild=False, roles=[])
    gwen = DiscordUser(id=person["id"], username="gwen", avatar="")
    seat_row = seat_claim(invite_id=_invite(team).pk, discord_user=gwen, now=timezone.now())
    buyer = subscribe_individual(world, "gwen@example.org")
    with pytest.raises(LinkError, match="already linked"):
        discord_link(member_id=buyer.pk, discord_user=gwen, now=timezone.now())
    seat_row.refresh_from_db()
    assert seat_row.team_id == team.pk and seat_row.discord_id == gwen.id


def test_a_cancelled_individual_subscriber_can_take_a_team_seat(world):
    kay = subscribe_individual(world, "kay@example.org")
    kay = world.link(kay, "kay", role="lord")
    world.stripe.state.cancel(kay.subscription_id)
    world.deliver_new()
    team, _ = subscribe_company(world, "ann@other.example", "Other Ltd", team_seats=1)

    claimed = seat_claim(
        invite_id=_invite(team).pk,
        discord_user=DiscordUser(id=kay.discord_id, username="kay", avatar=""),
        now=timezone.now(),
    )
    assert claimed.pk == kay.pk and claimed.team_id == team.pk
    assert claimed.cancelled_at is None and member_is_entitled(claimed, timezone.now())


def test_an_individual_subscriber_whose_plan_still_owes_cannot_take_a_seat(world):
    kay = subscribe_individual(world, "kay@example.org")
    kay = world.link(kay, "kay", role="lord")
    world.stripe.state.set_status(kay.subscription_id, "unpaid")
    world.deliver_new()
    team, _ = subscribe_company(world, "ann@other.example", "Other Ltd", team_seats=1)
    with pytest.raises(SeatError, match="own membership"):
        seat_claim(
            invite_id=_invite(team).pk,
            discord_user=DiscordUser(id=kay.discord_id, username="kay", avatar=""),
            now=timezone.now(),
        )
