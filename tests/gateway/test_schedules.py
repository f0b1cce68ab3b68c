"""The worker's schedules: declared once, applied by name, never duplicated."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from ops.models import GatewayConfig, Heartbeat
from ops.schedules import jobs, reconcile_cron, sync_schedules
from ops.tasks import worker_heartbeat

pytestmark = pytest.mark.django_db

NAMES = [
    "worker heartbeat",
    "deliver due notifications",
    "drain stripe events",
    "billing tick",
    "daily reconciliation",
    "prune old records",
]


def test_running_setup_twice_leaves_exactly_one_of_each(capsys):
    Schedule.objects.all().delete()

    call_command("setup_schedules")
    first = {s.name: (s.pk, s.next_run) for s in Schedule.objects.all()}
    call_command("setup_schedules")

    assert sorted(Schedule.objects.values_list("name", flat=True)) == sorted(NAMES)
    assert {s.name: (s.pk, s.next_run) for s in Schedule.objects.all()} == first
    output = capsys.readouterr().out
    assert output.count("created") == len(NAMES)
    assert output.count("unchanged") == len(NAMES)


def test_definitions_match_the_operating_plan():
    sync_schedules()
    by_name = {s.name: s for s in Schedule.objects.all()}
    assert by_name["worker heartbeat"].func == "ops.tasks.worker_heartbeat"
    assert (by_name["worker heartbeat"].schedule_type, by_name["worker heartbeat"].minutes) == (
        Schedule.MINUTES,
        1,
    )
    assert (by_name["billing tick"].func, by_name["billing tick"].minutes) == (
        "billing.tasks.billing_tick",
        5,
    )
    reconciliation = by_name["daily reconciliation"]
    assert reconciliation.func == "gateway.tasks.reconcile_scheduled"
    assert reconciliation.schedule_type == Schedule.CRON
    assert reconciliation.cron == "0 4 * * *"
    assert all(s.repeats == -1 for s in by_name.values())


def test_a_changed_definition_is_updated_in_place():
    sync_schedules()
    tick = Schedule.objects.get(name="billing tick")
    Schedule.objects.filter(pk=tick.pk).update(minutes=15, func="billing.tasks.old_name")
    Schedule.objects.create(name="billing tick", func="billing.tasks.billing_tick", minutes=5)

    outcome = sync_schedules()

    assert outcome["billing tick"] == "updated"
    (tick_after,) = Schedule.objects.filter(name="billing tick")
    assert tick_after.pk == tick.pk
    assert (tick_after.func, tick_after.minutes) == ("billing.tasks.billing_tick", 5)


def test_editing_the_reconciliation_hour_moves_the_schedule():
    sync_schedules()
    config = GatewayConfig.load()
    config.reconcile_hour = 6
    config.reconcile_timezone = "UTC"
    config.save()
    schedule = Schedule.objects.get(name="daily reconciliation")
    assert schedule.cron == "0 6 * * *"
    assert schedule.next_run.hour == 6


def test_reconciliation_hour_is_local_to_the_configured_timezone():
    config = GatewayConfig(reconcile_hour=4, reconcile_timezone="Europe/Berlin")
    winter = datetime(2026, 1, 15, 12, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 12, tzinfo=UTC)
    assert reconcile_cron(config, winter) == "0 3 * * *"
    assert reconcile_cron(config, summer) == "0 2 * * *"


def test_worker_heartbeat_task_refreshes_the_row():
    Heartbeat.objects.create(name="worker", beat_at=timezone.now() - timedelta(hours=1))
    worker_heartbeat()
    beat = Heartbeat.objects.get(name="worker")
    assert timezone.now() - beat.beat_at < timedelta(seconds=5)
    assert beat.details["pid"]


def _importable(path: str) -> bool:
    module, _, name = path.rpartition(".")
    try:
        return callable(getattr(importlib.import_module(module), name))
    except (ImportError, AttributeError):
        return False


@pytest.mark.parametrize("job", jobs(GatewayConfig()), ids=lambda job: job.name)
def test_every_scheduled_function_imports(job):
    # django-q2 imports the function only when the schedule fires; find a typo here instead.
    assert _importable(job.func), f"{job.func} does not import"
