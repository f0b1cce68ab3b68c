"""Endings that happen more than once, returns, and invites of a team that is not active.

A subscription can end, come back (Stripe reactivates an ``unpaid`` one once it is settled)
and end again; each ending is a new occasion for the farewell, each return a new access
period for claim reminders.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.reminders import claim_reminders_send
from members.models import Invite, Member, SeatTier
from ops.models import Notification
from tests.journeys import messages, subscribe_company, subscribe_individual

pytestmark = pytest.mark.django_db(transaction=True)

H = timedelta(hours=1)
D = timedelta(days=1)


def _end_unpaid(world, subscription_id: str) -> None:
    """A renewal fails and Stripe gives up retrying: the subscription is ``unpaid``."""
    world.stripe.state.fail_renewal(subscription_id)
    world.stripe.state.set_status(subscription_id, "unpaid")
    world.deliver_new()


def _settle(world, subscription_id: str) -> None:
    """The customer pays the open invoice: Stripe reactivates the same subscription."""
    world.recover(subscription_id)


def test_a_second_ending_of_the_same_subscription_sends_a_second_farewell(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    _end_unpaid(world, kay.subscription_id)
    assert len(messages("farewell", kay.discord_id)) == 1
    _settle(world, kay.subscription_id)
    kay.refresh_from_db()
    assert kay.cancelled_at is None
    _end_unpaid(world, kay.subscription_id)
    kay.refresh_from_db()
    assert kay.cancelled_at is not None
    assert len(messages("farewell", kay.discord_id)) == 2
    # …and a replay of the ending changes nothing.
    world.deliver_new()
    assert len(messages("farewell", kay.discord_id)) == 2


def test_a_returning_team_starts_a_new_access_period_for_claim_reminders(world):
    team, owner = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    assert owner.paid_at is not None
    # Bought a day ago: claim reminder keys name the access period to the second, and a
    # return within the same second as the purchase would share the first period's keys.
    first_paid = owner.paid_at - 24 * H
    Member.objects.filter(pk=owner.pk).update(paid_at=first_paid)
    claim_reminders_send(now=first_paid + 49 * H)
    assert [n.kind for n in messages("claim_reminder", "pat@acme.example")] == ["claim_reminder"]

    _end_unpaid(world, team.subscription_id)
    owner.refresh_from_db()
    assert owner.team_id is None
    _settle(world, team.subscription_id)
    owner.refresh_from_db()
    assert owner.team_id == team.pk and owner.seat_tier == SeatTier.OWNER  # back on the team
    assert owner.cancelled_at is None and owner.paid_at > first_paid

    # 48 hours after the return (not after the first purchase) the owner hears it again.
    claim_reminders_send(now=owner.paid_at + 47 * H)
    assert len(messages("claim_reminder", "pat@acme.example")) == 1
    claim_reminders_send(now=owner.paid_at + 49 * H)
    assert len(messages("claim_reminder", "pat@acme.example")) == 2


def test_owners_of_a_team_that_is_not_active_cannot_create_or_email_invites(world):
    team, owner = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=2)
    world.client.force_login(owner.user)
    # Stripe ended the subscription; our mirror knows, the team row not yet (event in flight).
    world.stripe.state.cancel(team.subscription_id)
    from billing.services import subscription_sync

    subscription_sync(subscription_id=team.subscription_id)
    response = world.client.post(
        "/team/invites/", {"tier": SeatTier.TEAM, "email": "tom@acme.example"}, follow=True
    )
    assert b"not active" in response.content
    assert not Invite.objects.filter(team=team).exists()
    assert not Notification.objects.filter(kind="seat_invite").exists()


def test_a_seat_claimed_again_after_a_return_is_a_new_access_period(world):
    team, _ = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    from billing.teams import seat_claim
    from members.models import DiscordUser

    person = world.discord.add_user(username="tom", in_guild=False, roles=[])
    tom = DiscordUser(id=person["id"], username="tom", avatar="")
    invite = Invite.objects.create(team=team, tier=SeatTier.TEAM, token="tok-a")
    first = seat_claim(invite_id=invite.pk, discord_user=tom, now=timezone.now() - 30 * D)
    _end_unpaid(world, team.subscription_id)
    _settle(world, team.subscription_id)
    again = Invite.objects.create(team=team, tier=SeatTier.TEAM, token="tok-b")
    claimed = seat_claim(invite_id=again.pk, discord_user=tom, now=timezone.now())
    assert claimed.pk == first.pk
    assert Member.objects.get(pk=first.pk).paid_at > first.paid_at
