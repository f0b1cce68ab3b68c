"""Each kind of drift is found once, reported once, repaired through the normal paths, and the
next run is clean. Everything talks to the fake Stripe and the fake Discord over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
import stripe
from django.core import mail
from django.utils import timezone

from billing.models import FailureEpisode
from gateway.reconciliation import reconcile
from members.models import ManagedRole, Member, Override, SeatTier, Team
from ops.models import Notification, ReconciliationRun
from tests.gateway.reconcile.world import World
from tests.personas import ROLE_IDS


def _debtor_member(world: World, name: str, *, holds: tuple[str, ...]) -> object:
    """A member whose renewal failed two days ago: Stripe past_due, our episode in Debtor."""
    member = world.member(name, holds=holds)
    outcome = world.stripe.state.fail_renewal(member.subscription_id)
    world.mirror(member.subscription_id)
    now = timezone.now()
    FailureEpisode.objects.create(
        subscription_id=member.subscription_id,
        member=member,
        invoice_id=str(outcome["invoice"]["id"]) if outcome.get("invoice") else "",
        opened_at=now - timedelta(days=3),
        grace_ends_at=now - timedelta(days=1),
        debtor_at=now - timedelta(days=1),
        removal_due_at=now + timedelta(days=29),
    )
    return member


def _lapsed_member(world: World, name: str, *, holds: tuple[str, ...]) -> object:
    member = world.member(name, holds=holds)
    world.stripe.state.cancel(member.subscription_id)
    world.mirror(member.subscription_id)
    return member


ROLE_CASES = {
    # kind: (build the member, roles held afterwards, role writes needed)
    "missing_access": (lambda w: w.member("percival", holds=()), {"lord"}, 1),
    "unauthorised_access": (lambda w: _lapsed_member(w, "mordred", holds=("lord",)), set(), 1),
    "wrong_role": (lambda w: w.member("gawain", holds=("squire",)), {"lord"}, 2),
    "debtor_mismatch": (lambda w: _debtor_member(w, "kay", holds=("lord",)), {"debtor"}, 2),
    "multiple_managed_roles": (
        lambda w: w.member("bors", holds=("lord", "squire")),
        {"lord"},
        1,
    ),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", list(ROLE_CASES))
def test_role_drift_is_found_reported_fixed_and_then_clean(world, kind):
    build, roles_after, writes = ROLE_CASES[kind]
    world.member("lancelot", holds=("lord",))  # in sync: never touched
    member = build(world)
    world.clear_logs()

    run = reconcile(fix=True, dry_run=False, trigger="test")

    assert run.status == ReconciliationRun.Status.DRIFT
    assert [(f["kind"], f["member_id"]) for f in run.findings] == [(kind, member.pk)]
    assert run.counts[f"finding:{kind}"] == 1
    assert [(f["action"], f["ok"]) for f in run.fixes] == [("sync_member_roles", True)]
    assert world.roles_of(member) == roles_after
    assert len(world.discord_role_writes()) == writes == run.counts["api_discord_writes"]
    reports = Notification.objects.filter(kind="reconciliation_report")
    assert sorted(reports.values_list("channel", flat=True)) == ["admin_channel", "email"]
    assert kind in reports.first().context["summary"]

    again = reconcile(fix=True, dry_run=False, trigger="test")
    assert again.status == ReconciliationRun.Status.CLEAN
    assert again.findings == []
    assert Notification.objects.filter(kind="reconciliation_report").count() == 2  # no all-clear


@pytest.mark.django_db(transaction=True)
def test_unknown_discord_user_with_managed_roles_loses_them_with_an_audit_reason(world):
    stranger = world.discord_user(roles=(ROLE_IDS["knight"], ROLE_IDS["squire"]))
    bystander = world.discord_user(roles=())
    world.clear_logs()

    run = reconcile(fix=True, dry_run=False, trigger="test")

    assert [(f["kind"], f["discord_id"]) for f in run.findings] == [
        ("unknown_discord_user_with_managed_roles", stranger)
    ]
    assert world.roles_of(stranger) == set()
    writes = world.discord_role_writes()
    assert len(writes) == 2 and all(w["method"] == "DELETE" for w in writes)
    assert all("reconciliation" in (w["reason"] or "") for w in writes), writes
    assert world.roles_of(bystander) == set()
    assert reconcile(fix=True, dry_run=False, trigger="test").status == "clean"


@pytest.mark.django_db(transaction=True)
def test_stale_dj_stripe_row_is_resynced_and_access_follows(world):
    """A missed ``customer.subscription.deleted``: our mirror says active, Stripe canceled."""
    member = world.member("agravain", holds=("lord",))
    world.stripe.state.cancel(member.subscription_id)  # no webhook reaches us
    assert world.db_status(member.subscription_id) == "active"
    world.clear_logs()

    run = reconcile(fix=True, dry_run=False, trigger="test")

    kinds = sorted(f["kind"] for f in run.findings)
    assert kinds == ["db_status_differs_from_stripe", "unauthorised_access"]
    assert world.db_status(member.subscription_id) == "canceled"
    member.refresh_from_db()
    assert member.cancelled_at is not None  # the same path as the webhook: access ended
    assert world.roles_of(member) == set()
    # The repair used the listed object: no per-subscription Stripe read.
    assert [r["path"] for r in world.stripe_requests()] == ["/v1/subscriptions"]
    assert reconcile(fix=True, dry_run=False, trigger="test").status == "clean"


@pytest.mark.django_db(transaction=True)
def test_stale_failure_episode_is_closed_when_stripe_shows_the_invoice_paid(world):
    """A missed ``invoice.paid``: the member paid, but we still hold them in Debtor."""
    member = _debtor_member(world, "tristan", holds=("debtor",))
    world.stripe.state.recover(member.subscription_id)  # paid in Stripe, no webhook here

    run = reconcile(fix=True, dry_run=False, trigger="test")

    kinds = sorted(f["kind"] for f in run.findings)
    assert kinds == ["db_status_differs_from_stripe", "stale_failure_episode"]
    episode = FailureEpisode.objects.get(subscription_id=member.subscription_id)
    assert episode.closed_at is not None
    assert episode.close_reason == FailureEpisode.CloseReason.RECOVERED
    assert world.roles_of(member) == {"lord"}  # role sync after the recovery
    assert Notification.objects.filter(member=member, kind="recovered_debtor").exists()
    assert reconcile(fix=True, dry_run=False, trigger="test").status == "clean"


@pytest.mark.django_db
def test_linked_member_not_in_guild_is_reported_and_emailed_a_way_back_once(
    world, settings, django_capture_on_commit_callbacks
):
    member = world.member("galahad", in_guild=False)
    world.clear_logs()

    with django_capture_on_commit_callbacks(execute=True):
        run = reconcile(fix=False, dry_run=False, trigger="test")

    assert [(f["kind"], f["member_id"]) for f in run.findings] == [
        ("linked_not_in_guild", member.pk)
    ]
    assert run.fixes == []  # only the member can join (their OAuth token is not stored)
    assert world.discord_role_writes() == []
    (email,) = [m for m in mail.outbox if m.to == ["galahad@example.com"]]
    assert f"{settings.APP_URL}/claim/" in email.body

    # Reported again the next day, emailed only once for the same absence.
    with django_capture_on_commit_callbacks(execute=True):
        again = reconcile(fix=True, dry_run=False, trigger="test")
    assert [f["kind"] for f in again.findings] == ["linked_not_in_guild"]
    assert Notification.objects.filter(member=member, kind="guild_rejoin").count() == 1


@pytest.mark.django_db
def test_an_absence_the_bot_missed_is_noticed_by_reconciliation_once_per_absence(
    world, django_capture_on_commit_callbacks
):
    member = world.member("percival", holds=("lord",))
    world.discord.remove_member(member.discord_id, dispatch=False)  # left while the bot was down

    with django_capture_on_commit_callbacks(execute=True):
        reconcile(fix=False, dry_run=False, trigger="test")
        reconcile(fix=False, dry_run=False, trigger="test")
    assert Notification.objects.filter(member=member, kind="guild_rejoin").count() == 1
    member.refresh_from_db()
    assert member.in_guild is False and member.guild_left_at is not None

    # Back in (again unseen by the bot), then gone once more: a second absence, a second email.
    world.discord.add_member(member.discord_id, roles=[ROLE_IDS["lord"]], dispatch=False)
    with django_capture_on_commit_callbacks(execute=True):
        clean = reconcile(fix=False, dry_run=False, trigger="test")
    assert clean.status == "clean"
    assert Member.objects.get(pk=member.pk).in_guild is True
    world.discord.remove_member(member.discord_id, dispatch=False)
    with django_capture_on_commit_callbacks(execute=True):
        reconcile(fix=False, dry_run=False, trigger="test")
    assert Notification.objects.filter(member=member, kind="guild_rejoin").count() == 2


def test_a_dry_run_sends_nothing(world):
    world.member("bors", in_guild=False)
    reconcile(fix=False, dry_run=True, trigger="test")
    assert not Notification.objects.filter(kind="guild_rejoin").exists()


@pytest.mark.django_db
def test_seats_taken_beyond_the_paid_quantity_are_reported(world):
    team = world.team(owner_seats=1, team_seats=1)
    world.member("owner", team=team, tier=SeatTier.OWNER, holds=("lord",))
    world.member("knight-1", team=team, tier=SeatTier.TEAM, holds=("knight",))
    world.member("knight-2", team=team, tier=SeatTier.TEAM, holds=("knight",))

    run = reconcile(fix=False, dry_run=False, trigger="test")

    assert [(f["kind"], f["team_id"], f["tier"]) for f in run.findings] == [
        ("seats_over_paid", team.pk, "team")
    ]
    assert "2 team seats taken, 1 paid" in run.findings[0]["detail"]


@pytest.mark.django_db(transaction=True)
def test_admin_overrides_survive_auto_fix_and_are_reported_as_information(world):
    revoked = world.member("vivien", holds=())
    revoked.override = Override.REVOKED
    revoked.override_reason = "harassment report under review"
    revoked.save()
    forced = world.member("nimue", holds=("knight",), introduced=False)
    forced.override, forced.forced_role = Override.FORCED, ManagedRole.KNIGHT
    forced.save()
    world.clear_logs()

    run = reconcile(fix=True, dry_run=False, trigger="test")

    assert run.status == ReconciliationRun.Status.CLEAN
    assert sorted((f["kind"], f["member_id"]) for f in run.findings) == sorted(
        [("override", revoked.pk), ("override", forced.pk)]
    )
    assert run.counts["findings"] == 0 and run.counts["informational"] == 2
    assert world.roles_of(revoked) == set() and world.roles_of(forced) == {"knight"}
    assert world.discord_role_writes() == []
    assert not Notification.objects.filter(kind="reconciliation_report").exists()


@pytest.mark.django_db(transaction=True)
def test_a_forced_role_wins_over_a_manual_discord_change(world):
    forced = world.member("morgause", holds=("lord",))
    forced.override, forced.forced_role = Override.FORCED, ManagedRole.SQUIRE
    forced.save()

    run = reconcile(fix=True, dry_run=False, trigger="test")

    assert sorted(f["kind"] for f in run.findings) == ["override", "wrong_role"]
    assert world.roles_of(forced) == {"squire"}


@pytest.mark.django_db
def test_member_mode_reads_only_that_member(world):
    member = world.member("dagonet", holds=("squire",))
    world.member("lucan", holds=())  # drift elsewhere is not this run's business
    world.clear_logs()

    run = reconcile(fix=False, dry_run=False, member_id=member.pk, trigger="test")

    assert [(f["kind"], f["member_id"]) for f in run.findings] == [("wrong_role", member.pk)]
    assert [r["path"] for r in world.stripe_requests()] == [
        f"/v1/subscriptions/{member.subscription_id}"
    ]
    discord_reads = world.discord.requests(method="GET")
    assert [r["api_path"] for r in discord_reads] == [
        f"/guilds/{world.discord.guild_id}/members/{member.discord_id}"
    ]
    assert run.counts["api_calls"] == 2


@pytest.mark.django_db
def test_a_stripe_outage_fails_the_run_with_the_reason_stored(world):
    world.member("lamorak", holds=("lord",))
    stripe.max_network_retries = 0
    world.stripe.state.add_fault("/v1/subscriptions", status=500, count=5)

    from gateway.reconciliation import ReconciliationError

    with pytest.raises(ReconciliationError):
        reconcile(fix=True, dry_run=False, trigger="test")

    run = ReconciliationRun.objects.get()
    assert run.status == ReconciliationRun.Status.FAILED
    assert "APIError" in run.error or "500" in run.error
    assert world.discord_role_writes() == []


@pytest.mark.django_db(transaction=True)
def test_a_lost_seat_reduction_is_found_and_fixing_applies_it(world):
    """The company lowered its team seats in Stripe and every delivery of the update failed:
    reconciliation finds the stale counts, and --fix applies the subscription again, which
    releases the most recently claimed seat beyond the paid count (SPEC §2a)."""
    team = world.team(owner_seats=1, team_seats=2)
    owner = world.member("owner", team=team, tier=SeatTier.OWNER, holds=("lord",))
    Team.objects.filter(pk=team.pk).update(primary_owner=owner)
    first = world.member("knight-1", team=team, tier=SeatTier.TEAM, holds=("knight",))
    last = world.member("knight-2", team=team, tier=SeatTier.TEAM, holds=("knight",))
    world.mirror(team.subscription_id)
    subscription = stripe.Subscription.retrieve(team.subscription_id)
    item = next(i for i in subscription["items"]["data"] if i["price"]["id"] == "price_team_seat")
    stripe.SubscriptionItem.modify(item["id"], quantity=1, proration_behavior="none")

    report = reconcile(fix=False, dry_run=False, trigger="test")
    kinds = {f["kind"] for f in report.findings}
    assert {"seat_counts_differ_from_stripe", "seats_over_paid"} <= kinds

    reconcile(fix=True, dry_run=False, trigger="test")

    team.refresh_from_db()
    assert (team.owner_seats, team.team_seats) == (1, 1)
    assert Member.objects.get(pk=first.pk).team_id == team.pk
    assert Member.objects.get(pk=last.pk).team_id is None
    assert world.roles_of(last) == set()
    assert reconcile(fix=False, dry_run=False, trigger="test").status == "clean"
