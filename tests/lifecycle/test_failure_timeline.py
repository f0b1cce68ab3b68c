"""The billing-failure timeline end to end: failed renewal in the fake Stripe → grace →
Debtor → reminders → removal (kick in the fake Discord, cancellation in the fake Stripe)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing.models import FailureEpisode
from members.models import Invite, Member, SeatTier
from ops.models import AuditLog, Notification
from tests.journeys import (
    never_sent,
    removed_keeping_subscription,
    seat,
    sent_once,
    subscribe_company,
    subscribe_individual,
)

pytestmark = pytest.mark.django_db(transaction=True)

H = timedelta(hours=1)
D = timedelta(days=1)
MIN = timedelta(minutes=1)

CADENCE = [(7, "debtor_reminder"), (10, "debtor_reminder"), (15, "debtor_reminder")]


def test_individual_member_walks_the_whole_timeline(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    sub = kay.subscription_id

    episode = world.fail_renewal(sub)
    t0 = world.rewind(episode)
    # At once: the billing detail by DM and email; full access kept.
    dm = sent_once("payment_failed", kay.discord_id)
    sent_once("payment_failed", "kay@example.org")
    assert "48 hours" in world.dms(kay)[0] and "/billing/" in world.dms(kay)[0]
    assert dm.member_id == kay.pk
    assert world.roles(kay) == ["lord"]

    # Stripe's automatic retry fails again three hours later: same clock, nothing new.
    world.fail_renewal(sub)
    assert FailureEpisode.objects.get(pk=episode.pk).opened_at == t0
    assert Notification.objects.filter(kind="payment_failed").count() == 2

    assert world.tick(t0 + 23 * H + 59 * MIN).reminders == []
    assert world.tick(t0 + 24 * H).reminders == [f"episode {episode.pk}: grace_warning"]
    world.tick(t0 + 30 * H)
    sent_once("grace_warning", kay.discord_id)
    never_sent("grace_warning", "kay@example.org")  # SPEC §2: a DM at 24 h

    report = world.tick(t0 + 48 * H + MIN)
    assert report.entered_debtor == [episode.pk]
    episode.refresh_from_db()
    debtor_at, removal_at = episode.debtor_at, episode.removal_due_at
    assert removal_at - debtor_at == 30 * D
    assert world.roles(kay) == ["debtor"]
    sent_once("debtor_entered", kay.discord_id)
    sent_once("debtor_entered", "kay@example.org")

    steps = [(debtor_at + d * D, f"debtor_reminder:{d}") for d in (7, 10, 15, 20, 25)]
    steps += [(removal_at - h * H, f"final_warning:{h}") for h in (48, 24, 12)]
    for due, name in steps:
        assert world.tick(due - MIN).reminders == [], name
        assert world.tick(due).reminders == [f"episode {episode.pk}: {name}"]
        assert world.tick(due + 5 * MIN).reminders == []
    for days in (7, 10, 15, 20, 25):
        rows = Notification.objects.filter(kind="debtor_reminder", episode__endswith=f":{days}")
        assert sorted(rows.values_list("channel", flat=True)) == ["dm", "email"]
        assert rows.first().context["days_left"] == 30 - days
    for hours in (48, 24, 12):
        rows = Notification.objects.filter(kind="final_warning", episode__endswith=f":{hours}")
        assert rows.count() == 2 and rows.first().context["hours_left"] == hours
    assert world.roles(kay) == ["debtor"]

    report = world.tick(removal_at)
    assert report.removed == [episode.pk]
    episode.refresh_from_db()
    assert episode.close_reason == FailureEpisode.CloseReason.REMOVED
    assert world.stripe_status(sub) == "canceled"
    kay.refresh_from_db()
    assert kay.cancelled_at is not None and kay.introduced_at is None
    assert world.roles(kay) is None  # roles removed and kicked
    sent_once("removal", kay.discord_id)
    sent_once("removal", "kay@example.org")
    assert "removed" in world.dms(kay)[-1]
    assert AuditLog.objects.filter(action="discord_member_kicked", target_id=str(kay.pk)).exists()

    # The cancellation webhook Stripe sends afterwards changes nothing and says nothing more.
    world.deliver_new()
    assert world.tick(removal_at + D).lines()[1:] == ["nothing due"]
    never_sent("farewell", kay.discord_id)
    dm_kinds = list(
        Notification.objects.filter(recipient=kay.discord_id)
        .order_by("pk")
        .values_list("kind", flat=True)
    )
    assert dm_kinds == [
        "payment_failed",
        "grace_warning",
        "debtor_entered",
        *["debtor_reminder"] * 5,
        *["final_warning"] * 3,
        "removal",
    ]
    assert len(world.dms(kay)) == len(dm_kinds)


def test_grace_boundary_is_exact(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)

    assert world.tick(t0 + 47 * H + 59 * MIN).entered_debtor == []
    assert world.roles(kay) == ["lord"]
    never_sent("debtor_entered", kay.discord_id)

    assert world.tick(t0 + 48 * H + MIN).entered_debtor == [episode.pk]
    assert world.roles(kay) == ["debtor"]
    sent_once("debtor_entered", kay.discord_id)


def test_only_subscription_cycle_failures_start_a_timeline(world):
    import stripe

    from billing.services import payment_failed_recorded

    kay = subscribe_individual(world, "kay@example.org")
    item = world.stripe.state.get_subscription(kay.subscription_id)["items"]["data"][0]
    world.stripe.state.decline_payments(1)
    # A seat change invoiced at once whose payment fails: the subscription is past_due and the
    # invoice open and unpaid, but it is not a renewal, so no access was at stake.
    stripe.Subscription.modify(
        kay.subscription_id,
        items=[{"id": item["id"], "quantity": 2}],
        proration_behavior="always_invoice",
    )
    world.deliver_new()
    sub = world.stripe.state.get_subscription(kay.subscription_id)
    assert sub["status"] == "past_due"
    invoice = world.stripe.state.get_invoice(sub["latest_invoice"])
    assert (invoice["billing_reason"], invoice["status"]) == ("subscription_update", "open")

    assert (
        payment_failed_recorded(subscription_id=kay.subscription_id, invoice_id=invoice["id"])
        is None
    )
    assert not FailureEpisode.objects.exists()
    assert not Notification.objects.filter(kind__startswith="payment_failed").exists()


def test_company_moves_together_owners_get_the_billing_detail(world):
    team, purchaser = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=2)
    invite = Invite.objects.create(team=team, tier=SeatTier.TEAM, token="t" * 43)
    pat = world.link(purchaser, "pat", role="lord")
    olga = world.link(seat(team, SeatTier.OWNER, None), "olga", role="lord")
    tom = world.link(seat(team, SeatTier.TEAM, "tom@acme.example"), "tom", role="knight")
    nina = seat(team, SeatTier.TEAM, "nina@acme.example")  # never linked Discord

    episode = world.fail_renewal(team.subscription_id)
    assert episode.team_id == team.pk
    t0 = world.rewind(episode)
    sent_once("payment_failed", pat.discord_id)
    sent_once("payment_failed", "pat@acme.example")
    sent_once("payment_failed", olga.discord_id)  # invite-created owner: no email on file
    sent_once("payment_failed_member", tom.discord_id)
    assert "plan administrator" in world.dms(tom)[0]
    never_sent("payment_failed", tom.discord_id)
    never_sent("payment_failed_member", "tom@acme.example")
    assert not Notification.objects.filter(member=nina).exists()

    world.tick(t0 + 48 * H + MIN)
    assert [world.roles(m) for m in (pat, olga, tom)] == [["debtor"]] * 3
    for member in (pat, olga, tom):
        sent_once("debtor_entered", member.discord_id)
    sent_once("debtor_entered", "pat@acme.example")
    never_sent("debtor_entered", "tom@acme.example")

    episode.refresh_from_db()
    world.tick(episode.debtor_at + 7 * D)
    tom_reminder = sent_once("debtor_reminder", tom.discord_id)
    assert tom_reminder.context["days_left"] == 23
    assert "plan administrator" in world.dms(tom)[-1]  # team wording, not "your payment"
    sent_once("debtor_reminder", "pat@acme.example")

    report = world.tick(episode.removal_due_at)
    assert report.removed == [episode.pk]
    assert world.stripe_status(team.subscription_id) == "canceled"
    team.refresh_from_db()
    invite.refresh_from_db()
    assert team.cancelled_at is not None and invite.revoked_at is not None
    for member in (pat, olga, tom):
        assert world.roles(member) is None
        sent_once("removal", member.discord_id)
    sent_once("removal", "pat@acme.example")
    never_sent("removal", "tom@acme.example")
    assert all(
        m.cancelled_at is not None and m.introduced_at is None
        for m in Member.objects.filter(team=team)
    )


def test_member_who_left_the_guild_still_enters_debtor_without_a_retry_storm(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    world.discord.remove_member(kay.discord_id)

    assert world.tick(t0 + 48 * H + MIN).entered_debtor == [episode.pk]
    kay.refresh_from_db()
    assert kay.role_sync_status == "not_in_guild" and not kay.in_guild
    sent_once("debtor_entered", "kay@example.org")
    # Later ticks have nothing to redo for the transition.
    assert world.tick(t0 + 48 * H + 10 * MIN).lines()[1:] == ["nothing due"]
    assert FailureEpisode.objects.get(pk=episode.pk).debtor_at == t0 + 48 * H + MIN

    # Coming back, they find the Debtor role (what the bot's join handler converges to).
    world.discord.add_member(kay.discord_id, dispatch=False)
    from discordsync.tasks import sync_member_roles

    assert sync_member_roles(kay.pk) == "ok"
    assert world.roles(kay) == ["debtor"]


def test_after_three_days_of_downtime_only_the_latest_reminder_goes_out(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 48 * H + MIN)
    episode.refresh_from_db()
    world.tick(episode.debtor_at + 7 * D + H)  # day 7 on time

    # Down from day 8 to day 15 + 1 h: days 10 and 15 are both due at the first tick back.
    report = world.tick(episode.debtor_at + 15 * D + H)
    assert report.reminders == [f"episode {episode.pk}: debtor_reminder:15"]
    keys = sorted(
        Notification.objects.filter(kind="debtor_reminder", channel="dm").values_list(
            "episode", flat=True
        )
    )
    assert [k.rsplit(":", 1)[1] for k in keys] == ["15", "7"]
    assert len(world.dms(kay)) == 4  # failed, debtor entered, day 7, day 15


def test_grace_warning_is_skipped_when_downtime_swallowed_the_whole_grace(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    report = world.tick(t0 + 50 * H)
    assert report.entered_debtor == [episode.pk] and report.reminders == []
    never_sent("grace_warning", kay.discord_id)
    sent_once("debtor_entered", kay.discord_id)


def test_closed_dms_never_block_the_timeline(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    world.discord.set_dms_closed(kay.discord_id)
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)

    world.tick(t0 + 48 * H + MIN)
    assert world.roles(kay) == ["debtor"]
    dm = Notification.objects.get(kind="debtor_entered", recipient=kay.discord_id)
    assert dm.status == Notification.Status.UNDELIVERABLE
    sent_once("debtor_entered", "kay@example.org")

    episode.refresh_from_db()
    assert world.tick(episode.removal_due_at).removed == [episode.pk]
    assert world.roles(kay) is None
    assert world.dms(kay) == []


def test_email_provider_outage_is_retried_and_each_email_still_goes_once(world, settings):
    from django.core import mail
    from django.utils import timezone

    from ops.tasks import deliver_due_notifications
    from tests.journeys import FlakyEmail

    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    mail.outbox.clear()
    FlakyEmail.calls, FlakyEmail.failures = 0, 2
    settings.EMAIL_BACKEND = "tests.journeys.FlakyEmail"

    world.fail_renewal(kay.subscription_id)
    email = Notification.objects.get(kind="payment_failed", channel="email")
    assert email.status == Notification.Status.FAILED and "unavailable" in email.last_error
    sent_once("payment_failed", kay.discord_id)  # the DM does not wait for the email

    for _ in range(3):  # the provider comes back on the third attempt
        Notification.objects.filter(pk=email.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        deliver_due_notifications()
    sent_once("payment_failed", "kay@example.org")
    assert [m.to for m in mail.outbox] == [["kay@example.org"]]


def test_removal_keeps_the_stripe_subscription_when_configured(world):
    kay = removed_keeping_subscription(world, "kay@example.org", "kay")
    assert kay.cancelled_at is not None
    sent_once("removal", kay.discord_id)


def test_stripe_down_at_removal_retries_next_tick(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 48 * H + MIN)
    episode.refresh_from_db()

    from billing.tick import billing_tick

    # Every attempt of stripe-python's bounded retries fails.
    world.stripe.state.add_fault(
        f"/v1/subscriptions/{kay.subscription_id}", status=500, count=3, method="DELETE"
    )
    report = billing_tick(now=episode.removal_due_at)
    assert report.removed == [] and len(report.errors) == 1
    episode.refresh_from_db()
    assert episode.is_open and world.roles(kay) == ["debtor"]
    never_sent("removal", kay.discord_id)

    assert world.tick(episode.removal_due_at + 5 * MIN).removed == [episode.pk]
    sent_once("removal", kay.discord_id)
    assert world.stripe_status(kay.subscription_id) == "canceled"
