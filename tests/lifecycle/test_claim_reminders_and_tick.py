"""Claim reminders, the ``billing_tick`` command and task, and concurrent ticks on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections

from billing.tick import billing_tick
from members.models import Member
from ops.models import Notification
from tests.journeys import sent_once, subscribe_individual

pytestmark = pytest.mark.django_db(transaction=True)

H = timedelta(hours=1)
D = timedelta(days=1)
MIN = timedelta(minutes=1)


def _paid_long_ago(member: Member, days: int = 200):
    """Move the first payment back so the whole cadence lies before the real clock."""
    paid_at = member.paid_at - timedelta(days=days)
    Member.objects.filter(pk=member.pk).update(paid_at=paid_at)
    return paid_at


def _reminders(email: str) -> list[tuple[str, str]]:
    rows = Notification.objects.filter(recipient=email, kind__startswith="claim_reminder")
    return [(n.kind, n.episode.rsplit(":", 1)[1]) for n in rows.order_by("pk")]


def test_claim_reminder_cadence_eight_emails_each_once(world):
    una = subscribe_individual(world, "una@example.org")
    p0 = _paid_long_ago(una)

    assert billing_tick(now=p0 + 47 * H + 59 * MIN).claim_reminders == []
    moments = [48 * H, 7 * D] + [d * D for d in range(30, 181, 30)]
    for offset in moments:
        billing_tick(now=offset + p0)
        billing_tick(now=offset + p0 + 5 * MIN)
    billing_tick(now=p0 + 200 * D)

    assert _reminders("una@example.org") == [
        ("claim_reminder", "48h"),
        ("claim_reminder", "168h"),
        *[("claim_reminder_late", f"{d * 24}h") for d in range(30, 181, 30)],
    ]
    assert set(
        Notification.objects.filter(kind__startswith="claim_reminder").values_list(
            "status", flat=True
        )
    ) == {"sent"}
    late = Notification.objects.filter(kind="claim_reminder_late").order_by("pk").first()
    assert late.context["days_since_payment"] == 30


def test_linking_discord_stops_claim_reminders(world):
    una = subscribe_individual(world, "una@example.org")
    p0 = _paid_long_ago(una)
    billing_tick(now=p0 + 48 * H)
    world.link(una, "una", role=None)
    for offset in (3 * D, 7 * D, 30 * D, 60 * D):
        billing_tick(now=p0 + offset)
    assert _reminders("una@example.org") == [("claim_reminder", "48h")]


def test_after_downtime_only_the_latest_claim_reminder_goes_out(world):
    una = subscribe_individual(world, "una@example.org")
    p0 = _paid_long_ago(una)
    report = billing_tick(now=p0 + 65 * D)
    assert report.claim_reminders == [f"member {una.pk}: claim:1440h"]
    assert _reminders("una@example.org") == [("claim_reminder_late", "1440h")]


def test_cancelled_members_get_no_claim_reminders(world):
    una = subscribe_individual(world, "una@example.org")
    world.stripe.state.cancel(una.subscription_id)
    world.deliver_new()
    p0 = _paid_long_ago(una)
    billing_tick(now=p0 + 7 * D)
    assert _reminders("una@example.org") == []


def test_command_runs_as_of_another_moment_and_prints_what_it_did(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    out = StringIO()
    call_command("billing_tick", "--at", (t0 + 49 * H).isoformat(), stdout=out)
    assert f"episode {episode.pk}: entered Debtor" in out.getvalue()
    assert world.roles(kay) == ["debtor"]

    out = StringIO()
    call_command("billing_tick", "--at", (t0 + 49 * H).isoformat(), stdout=out)
    assert "nothing due" in out.getvalue()
    sent_once("debtor_entered", kay.discord_id)


def test_command_refuses_a_malformed_moment_and_changes_nothing(world):
    with pytest.raises(CommandError, match="not an ISO date"):
        call_command("billing_tick", "--at", "next tuesday")
    assert not Notification.objects.exists()


def test_scheduled_task_path_runs_the_tick():
    from django_q.tasks import async_task, result

    from ops.models import GatewayConfig
    from ops.schedules import jobs

    assert "billing.tasks.billing_tick" in {job.func for job in jobs(GatewayConfig())}
    task_id = async_task("billing.tasks.billing_tick")
    assert result(task_id).startswith("billing tick as of ")


def test_stop_request_finishes_the_current_episode_and_leaves_the_rest(world):
    members = [
        world.link(subscribe_individual(world, f"m{i}@example.org"), f"m{i}", role="lord")
        for i in range(2)
    ]
    episodes = [world.fail_renewal(m.subscription_id) for m in members]
    t0s = [world.rewind(e) for e in episodes]
    at = max(t0s) + 49 * H
    asked = iter([False, True, True, True])
    report = billing_tick(now=at, should_stop=lambda: next(asked))
    assert report.stopped and report.entered_debtor == [episodes[0].pk]
    assert billing_tick(now=at).entered_debtor == [episodes[1].pk]


@pytest.mark.postgres
def test_two_ticks_at_the_same_moment_send_every_message_once(world):
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL (set DATABASE_URL=postgres://…): SQLite serialises writers, so "
            "concurrent ticks would not race"
        )
    team_members = []
    for i in range(3):
        team_members.append(
            world.link(subscribe_individual(world, f"c{i}@example.org"), f"c{i}", role="lord")
        )
    episodes = [world.fail_renewal(m.subscription_id) for m in team_members]
    t0 = min(world.rewind(e) for e in episodes)

    def race(at) -> None:
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def run() -> None:
            try:
                barrier.wait()
                report = billing_tick(now=at)
                assert not report.errors, report.errors
            except BaseException as exc:  # noqa: BLE001 — re-raised in the main thread
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors

    race(t0 + 24 * H + H)
    race(t0 + 50 * H)
    debtor_at = min(e.debtor_at for e in type(episodes[0]).objects.all())
    for day in (7, 10):
        race(debtor_at + day * D + H)
    removal = max(e.removal_due_at for e in type(episodes[0]).objects.all())
    race(removal + H)

    for member in team_members:
        member.refresh_from_db()
        kinds = list(
            Notification.objects.filter(recipient=member.discord_id)
            .order_by("pk")
            .values_list("kind", flat=True)
        )
        assert kinds == [
            "payment_failed",
            "grace_warning",
            "debtor_entered",
            "debtor_reminder",
            "debtor_reminder",
            "removal",
        ], kinds
        assert len(world.dms(member)) == len(kinds)
        assert world.roles(member) is None
        assert world.stripe_status(member.subscription_id) == "canceled"
