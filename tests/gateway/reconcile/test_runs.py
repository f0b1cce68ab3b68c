"""How runs behave: report-only and dry runs change nothing, pause, verification an hour after a
fixing run, one daily run, one run at a time, and the minimum number of API calls."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from gateway.reconciliation import (
    LEASE_NAME,
    RUN_TIMEOUT_SECONDS,
    ReconciliationBusy,
    reconcile,
    reconciliation_start,
)
from gateway.tasks import reconcile_scheduled, reconcile_verify
from members.models import Member
from ops.leases import lease_acquire
from ops.models import AuditLog, GatewayConfig, Notification, ReconciliationRun
from tests.gateway.reconcile.world import World


def _drifted(world: World) -> list[Member]:
    """Three members whose roles are wrong in three different ways."""
    return [
        world.member("percival", holds=()),
        world.member("gawain", holds=("squire",)),
        world.member("bors", holds=("lord", "knight")),
    ]


def _snapshot(world: World, members: list[Member]) -> tuple:
    return (
        [world.roles_of(m) for m in members],
        list(Member.objects.order_by("pk").values_list("discord_roles", "role_sync_status")),
        AuditLog.objects.count(),
    )


@pytest.mark.django_db(transaction=True)
def test_report_only_changes_nothing_but_stores_and_reports(world):
    members = _drifted(world)
    before = _snapshot(world, members)
    world.clear_logs()

    run = reconcile(fix=False, dry_run=False, trigger="test")

    assert run.status == ReconciliationRun.Status.DRIFT and run.counts["findings"] == 3
    assert run.fixes == [] and run.counts["api_discord_writes"] == 0
    assert world.discord_role_writes() == []
    assert all(r["method"] == "GET" for r in world.stripe_requests())
    assert _snapshot(world, members) == before
    assert ReconciliationRun.objects.filter(pk=run.pk, status="drift").exists()
    assert Notification.objects.filter(kind="reconciliation_report").count() == 2
    assert not ReconciliationRun.objects.filter(is_verification=True).exists()


@pytest.mark.django_db(transaction=True)
def test_dry_run_with_fix_lists_the_fixes_and_touches_nothing(world):
    members = _drifted(world)
    before = _snapshot(world, members)
    world.clear_logs()

    run = reconcile(fix=True, dry_run=True, trigger="test")

    assert run.pk is None  # not stored
    assert sorted(f["member_id"] for f in run.fixes) == sorted(m.pk for m in members)
    assert {f["action"] for f in run.fixes} == {"sync_member_roles"}
    assert world.discord_role_writes() == []
    assert _snapshot(world, members) == before
    assert not ReconciliationRun.objects.exists()
    assert not Notification.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_fixing_run_schedules_a_verification_an_hour_later_that_the_schedule_runs(world):
    member = world.member("gareth", holds=("squire",))

    run = reconcile(fix=True, dry_run=False, trigger="test")
    assert run.counts["fixes"] == 1

    verification = ReconciliationRun.objects.get(is_verification=True)
    assert verification.status == ReconciliationRun.Status.SCHEDULED
    assert not verification.fix
    due = verification.scheduled_for - run.finished_at
    assert timedelta(minutes=59) < due <= timedelta(hours=1)
    one_off = Schedule.objects.get(name=f"reconciliation run {verification.pk}")
    assert (one_off.func, one_off.schedule_type) == (
        "gateway.tasks.reconcile_verify",
        Schedule.ONCE,
    )
    assert one_off.next_run == verification.scheduled_for
    assert f"'timeout': {RUN_TIMEOUT_SECONDS}" in one_off.kwargs  # the run's own limit

    # Not due yet: neither its one-off schedule firing early nor the daily run touches it.
    assert reconcile_verify(verification.pk) == "skipped"
    reconcile_scheduled()
    verification.refresh_from_db()
    assert verification.status == ReconciliationRun.Status.SCHEDULED

    # An hour later (even after a restart: it is a stored row) the schedule executes it.
    ReconciliationRun.objects.filter(pk=verification.pk).update(
        scheduled_for=timezone.now() - timedelta(seconds=1)
    )
    world.discord.set_member_roles(member.discord_id, [])  # someone undid the fix meanwhile
    assert reconcile_verify(verification.pk) == "drift"
    verification.refresh_from_db()
    assert verification.status == ReconciliationRun.Status.DRIFT
    assert [f["kind"] for f in verification.findings] == ["missing_access"]
    assert world.roles_of(member) == set()  # report-only
    assert ReconciliationRun.objects.filter(is_verification=True).count() == 1  # no chain


@pytest.mark.django_db(transaction=True)
def test_the_daily_run_happens_once_per_local_day_with_the_configured_autofix(world):
    member = world.member("ywain", holds=())
    GatewayConfig.objects.update_or_create(pk=1, defaults={"reconcile_autofix": True})

    first = reconcile_scheduled()
    second = reconcile_scheduled()

    daily = ReconciliationRun.objects.get(trigger="schedule")
    assert first == "daily:queued" and second == "daily:already_claimed"
    assert daily.status == ReconciliationRun.Status.DRIFT  # the queued task ran (sync in tests)
    assert daily.fix and daily.scheduled_day is not None
    assert world.roles_of(member) == {"lord"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_the_daily_run_belongs_to_the_local_day_of_the_configured_timezone(world, zone):
    world.member("ector", holds=("lord",))
    GatewayConfig.objects.update_or_create(pk=1, defaults={"reconcile_timezone": zone})

    assert reconcile_scheduled() == "daily:queued"

    run = ReconciliationRun.objects.get(trigger="schedule")
    assert run.status == ReconciliationRun.Status.CLEAN
    assert run.scheduled_day == datetime.now(ZoneInfo(zone)).date()


@pytest.mark.django_db(transaction=True)
def test_pause_skips_the_scheduled_run_but_not_a_manual_one(world):
    member = world.member("lionel", holds=())
    GatewayConfig.objects.update_or_create(
        pk=1, defaults={"reconcile_paused": True, "reconcile_autofix": True}
    )
    world.clear_logs()

    assert reconcile_scheduled() == "daily:skipped"
    skipped = ReconciliationRun.objects.get()
    assert skipped.status == ReconciliationRun.Status.SKIPPED
    assert "paused" in skipped.error
    assert world.discord.requests() == [] and world.stripe_requests() == []
    assert world.roles_of(member) == set()

    manual = reconcile(fix=True, dry_run=False, trigger="command")
    assert manual.status == ReconciliationRun.Status.DRIFT
    assert world.roles_of(member) == {"lord"}


@pytest.mark.django_db(transaction=True)
def test_a_held_lease_refuses_a_second_run(world):
    member = world.member("safer", holds=())
    assert lease_acquire(
        name=LEASE_NAME, holder="another-host", ttl=timedelta(minutes=5), now=timezone.now()
    )
    world.clear_logs()

    with pytest.raises(ReconciliationBusy):
        reconcile(fix=True, dry_run=False, trigger="command")
    refused = ReconciliationRun.objects.get()
    assert refused.status == ReconciliationRun.Status.FAILED
    assert "another reconciliation is running" in refused.error
    assert world.discord.requests() == [] and world.stripe_requests() == []
    assert world.roles_of(member) == set()
    with pytest.raises(ReconciliationBusy):
        reconciliation_start(trigger="admin", fix=False)


@pytest.mark.django_db(transaction=True)
def test_staff_run_now_is_queued_audited_and_executed_by_the_worker(world, admin_user):
    member = world.member("palamedes", holds=("squire",))

    run = reconciliation_start(trigger="admin", fix=True, actor=admin_user)

    run.refresh_from_db()  # the worker task ran on commit (synchronous under pytest)
    assert run.status == ReconciliationRun.Status.DRIFT and run.trigger == "admin"
    assert world.roles_of(member) == {"lord"}
    audit = AuditLog.objects.get(action="reconciliation_requested")
    assert (audit.actor_type, audit.actor_id) == ("staff", str(admin_user.pk))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_on_postgresql_one_runs_the_others_are_refused(world):
    if connection.vendor != "postgresql":
        pytest.skip(f"needs PostgreSQL (DATABASE_URL); running on {connection.vendor}")
    members = _drifted(world)
    threads_count = 6
    barrier = threading.Barrier(threads_count)
    outcomes: list[str] = []

    def start() -> None:
        try:
            barrier.wait()
            outcomes.append(reconcile(fix=True, dry_run=False, trigger="test").status)
        except ReconciliationBusy:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert outcomes.count("refused") >= 1, outcomes
    ran = [o for o in outcomes if o != "refused"]
    assert ran and ran[0] == "drift"
    # However many got through one after another, each member was fixed once.
    assert [world.roles_of(m) for m in members] == [{"lord"}, {"lord"}, {"lord"}]
    assert len(world.discord_role_writes()) == 1 + 2 + 1


@pytest.mark.django_db(transaction=True)
def test_api_calls_equal_the_minimum_for_a_seeded_world(world):
    """250 subscriptions and 2,100 guild members: ⌈250/100⌉ + ⌈2100/1000⌉ reads, and one
    write per drifted role change (plus the sync path's one re-read per fixed member)."""
    members = _drifted(world)  # 3 subscriptions, 3 guild members
    world.stripe.state.seed(247)
    guild_size = len(world.discord.members)
    world.discord.seed_members(2100 - guild_size)
    world.clear_logs()

    report = reconcile(fix=False, dry_run=False, trigger="test")

    assert report.counts["subscriptions"] == 250 and report.counts["guild_members"] == 2100
    minimum_reads = math.ceil(250 / 100) + math.ceil(2100 / 1000)
    assert report.counts["api_calls"] == minimum_reads == 6
    assert len(world.stripe_requests()) == 3
    assert len(world.discord.requests(path_prefix="/guilds/")) == 3
    world.clear_logs()

    fixing = reconcile(fix=True, dry_run=False, trigger="test")

    role_changes = 1 + 2 + 1  # add Lord; Squire→Lord; drop Knight
    writes = world.discord_role_writes()
    assert len(writes) == role_changes == fixing.counts["api_discord_writes"]
    assert len(world.discord.requests(method="GET", path_prefix="/guilds/")) == 3 + len(members)
    assert fixing.counts["api_calls"] == minimum_reads + len(members) + role_changes


@pytest.mark.django_db(transaction=True)
def test_an_overdue_verification_whose_schedule_was_lost_runs_with_the_daily_schedule(world):
    member = world.member("lamorak", holds=())
    reconcile(fix=True, dry_run=False, trigger="test")
    verification = ReconciliationRun.objects.get(is_verification=True)
    Schedule.objects.filter(name__startswith="reconciliation run").delete()  # e.g. a restore
    ReconciliationRun.objects.filter(pk=verification.pk).update(
        scheduled_for=timezone.now() - timedelta(hours=3)
    )

    outcome = reconcile_scheduled()

    verification.refresh_from_db()
    assert verification.status == ReconciliationRun.Status.CLEAN
    assert outcome.split(",")[0] == f"queued:{verification.pk}"
    assert world.roles_of(member) == {"lord"}
