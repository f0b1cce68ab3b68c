"""Recovery (``invoice.paid`` in grace or Debtor), normal renewals, cancellation at period end
and the return of a cancelled subscriber — through the fake Stripe and the fake Discord."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings

from billing.models import FailureEpisode
from discordsync.tasks import sync_member_roles
from members.models import SeatTier
from ops.models import Notification
from tests.journeys import never_sent, seat, sent_once, subscribe_company, subscribe_individual
from tests.providers import pay_checkout, start_individual_checkout

pytestmark = pytest.mark.django_db(transaction=True)

H = timedelta(hours=1)
D = timedelta(days=1)


def test_recovery_in_grace_keeps_the_role_and_stops_the_timeline(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 24 * H)

    world.recover(kay.subscription_id)
    episode.refresh_from_db()
    assert episode.close_reason == FailureEpisode.CloseReason.RECOVERED
    assert world.roles(kay) == ["lord"]
    sent_once("recovered_grace", kay.discord_id)
    sent_once("recovered_grace", "kay@example.org")
    never_sent("recovered_debtor", kay.discord_id)

    for at in (t0 + 48 * H + H, t0 + 10 * D):
        assert world.tick(at).lines()[1:] == ["nothing due"]
    never_sent("debtor_entered", kay.discord_id)
    assert world.roles(kay) == ["lord"]


def test_recovery_in_debtor_restores_lord(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 48 * H + H)
    episode.refresh_from_db()
    world.tick(episode.debtor_at + 10 * D)
    assert world.roles(kay) == ["debtor"]

    world.recover(kay.subscription_id)
    assert world.roles(kay) == ["lord"]
    dm = sent_once("recovered_debtor", kay.discord_id)
    assert dm.context["role_name"] == "Lord"
    assert "Lord" in world.dms(kay)[-1]
    sent_once("recovered_debtor", "kay@example.org")
    never_sent("recovered_grace", kay.discord_id)

    # No further reminders once recovered.
    assert world.tick(episode.debtor_at + 15 * D).lines()[1:] == ["nothing due"]
    assert world.tick(episode.removal_due_at).removed == []
    assert Notification.objects.filter(kind="debtor_reminder", channel="dm").count() == 1


def test_a_squire_in_debtor_comes_back_as_squire(world):
    sam = world.link(
        subscribe_individual(world, "sam@example.org"), "sam", role="squire", introduced=False
    )
    episode = world.fail_renewal(sam.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 48 * H + H)
    assert world.roles(sam) == ["debtor"]

    world.recover(sam.subscription_id)
    assert world.roles(sam) == ["squire"]
    assert sent_once("recovered_debtor", sam.discord_id).context["role_name"] == "Squire"


def test_team_recovery_from_debtor(world):
    team, purchaser = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    pat = world.link(purchaser, "pat", role="lord")
    olga = world.link(seat(team, SeatTier.OWNER, None), "olga", role="lord")
    tom = world.link(seat(team, SeatTier.TEAM, "tom@acme.example"), "tom", role="knight")
    episode = world.fail_renewal(team.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 48 * H + H)
    assert [world.roles(m) for m in (pat, olga, tom)] == [["debtor"]] * 3

    world.recover(team.subscription_id)
    assert [world.roles(m) for m in (pat, olga, tom)] == [["lord"], ["lord"], ["knight"]]
    sent_once("recovered_debtor", pat.discord_id)
    sent_once("recovered_debtor", "pat@acme.example")
    sent_once("recovered_debtor", olga.discord_id)
    sent_once("recovered_member", tom.discord_id)
    never_sent("recovered_debtor", tom.discord_id)
    never_sent("recovered_member", "tom@acme.example")
    assert "Acme Ltd" in world.dms(tom)[-1]


def test_normal_renewal_changes_nothing_and_says_nothing(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    before = Notification.objects.count()
    world.stripe.state.renew(kay.subscription_id)
    world.deliver_new()
    assert Notification.objects.count() == before
    assert not FailureEpisode.objects.exists()
    assert world.roles(kay) == ["lord"]


def test_cancel_at_period_end_then_end_then_return(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    old_sub = kay.subscription_id

    # Cancelling in the portal changes nothing until the period ends.
    world.stripe.state.set_cancel_at_period_end(old_sub)
    world.deliver_new()
    kay.refresh_from_db()
    assert kay.cancelled_at is None and world.roles(kay) == ["lord"]
    never_sent("farewell", kay.discord_id)
    world.client.force_login(kay.user)
    assert "set to end on" in world.client.get("/dashboard/").content.decode()

    world.stripe.state.renew(old_sub)  # the period ends: Stripe deletes the subscription
    world.deliver_new()
    kay.refresh_from_db()
    assert kay.cancelled_at is not None and kay.introduced_at is None
    assert world.roles(kay) is None  # roles removed and kicked
    sent_once("farewell", kay.discord_id)
    assert len(world.dms(kay)) == 1  # the farewell arrived before the kick

    # The returning subscriber pays again: access back, linked Discord kept.
    session = start_individual_checkout(kay)
    pay_checkout(world.stripe, session.id, email="kay@example.org")
    world.deliver_new()
    kay.refresh_from_db()
    assert kay.subscription_id != old_sub and kay.cancelled_at is None
    assert kay.discord_id and kay.role_sync_status == "not_in_guild"
    page = world.client.get("/dashboard/").content.decode()
    assert settings.DISCORD_INVITE_URL in page

    # Back in the guild, they start again as Squire (the introduction must be redone).
    world.discord.add_member(kay.discord_id, dispatch=False)
    assert sync_member_roles(kay.pk) == "ok"
    assert world.roles(kay) == ["squire"]


def test_returning_subscriber_still_in_the_guild_is_reprovisioned_on_payment(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    world.stripe.state.cancel(kay.subscription_id)
    world.deliver_new()
    assert world.roles(kay) is None
    # They rejoin the server while unsubscribed: no managed role.
    world.discord.add_member(kay.discord_id, dispatch=False)
    assert sync_member_roles(kay.pk) == "ok" and world.roles(kay) == []

    session = start_individual_checkout(kay)
    pay_checkout(world.stripe, session.id, email="kay@example.org")
    world.deliver_new()
    assert world.roles(kay) == ["squire"]  # re-provisioned by the payment itself


def test_company_cancellation_removes_every_member(world):
    team, purchaser = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    pat = world.link(purchaser, "pat", role="lord")
    tom = world.link(seat(team, SeatTier.TEAM, "tom@acme.example"), "tom", role="knight")
    world.stripe.state.cancel(team.subscription_id)
    world.deliver_new()
    team.refresh_from_db()
    assert team.cancelled_at is not None
    for member in (pat, tom):
        member.refresh_from_db()
        assert member.cancelled_at is not None and member.introduced_at is None
        assert world.roles(member) is None
        sent_once("farewell", member.discord_id)
