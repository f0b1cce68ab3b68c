"""``prune_old_records``: old finished records go, recent and unfinished ones stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule
from djstripe.models import WebhookEventTrigger

from billing.models import StripeEventInbox
from gateway.tasks import prune_old_records
from ops.models import GatewayConfig, Notification, ReconciliationRun
from ops.schedules import jobs

pytestmark = pytest.mark.django_db

OLD = timedelta(days=31)
RECENT = timedelta(days=29)


def _trigger(age: timedelta, *, processed: bool) -> WebhookEventTrigger:
    trigger = WebhookEventTrigger.objects.create(
        remote_ip="127.0.0.1", body="{}", headers={}, valid=True, processed=processed
    )
    WebhookEventTrigger.objects.filter(pk=trigger.pk).update(created=timezone.now() - age)
    return trigger


def _event(n: int, age: timedelta, status: str) -> StripeEventInbox:
    return StripeEventInbox.objects.create(
        event_id=f"evt_{n}",
        type="invoice.paid",
        body="{}",
        received_at=timezone.now() - age,
        status=status,
    )


def _run(age: timedelta, status: str) -> ReconciliationRun:
    at = timezone.now() - age
    return ReconciliationRun.objects.create(
        status=status,
        started_at=at,
        finished_at=None if status == "scheduled" else at,
        scheduled_for=at,
    )


def _notification(n: int, age: timedelta, status: str) -> Notification:
    notification = Notification.objects.create(
        key=f"k{n}",
        channel="email",
        kind="welcome",
        recipient="a@example.com",
        status=status,
        sent_at=timezone.now() - age if status == "sent" else None,
    )
    Notification.objects.filter(pk=notification.pk).update(created_at=timezone.now() - age)
    return notification


def test_prune_keeps_recent_and_unfinished_rows_and_deletes_old_finished_ones():
    GatewayConfig.objects.update_or_create(pk=1, defaults={"retention_days": 30})
    gone = [
        _trigger(OLD, processed=True),
        _event(1, OLD, StripeEventInbox.Status.PROCESSED),
        _event(2, OLD, StripeEventInbox.Status.IGNORED),
        _run(OLD, ReconciliationRun.Status.CLEAN),
        _run(OLD, ReconciliationRun.Status.DRIFT),
        _notification(1, OLD, Notification.Status.SENT),
    ]
    kept = [
        _trigger(RECENT, processed=True),
        _trigger(OLD, processed=False),  # never processed: an operator must look at it
        _event(3, RECENT, StripeEventInbox.Status.PROCESSED),
        _event(4, OLD, StripeEventInbox.Status.FAILED),
        _event(5, OLD, StripeEventInbox.Status.RETRYING),
        _event(6, OLD, StripeEventInbox.Status.PENDING),
        _run(RECENT, ReconciliationRun.Status.DRIFT),
        _run(OLD, ReconciliationRun.Status.SCHEDULED),
        _notification(2, RECENT, Notification.Status.SENT),
        _notification(3, OLD, Notification.Status.FAILED),
        _notification(4, OLD, Notification.Status.UNDELIVERABLE),
        _notification(5, OLD, Notification.Status.PENDING),
    ]

    deleted = prune_old_records()

    assert deleted == {
        "webhook_triggers": 1,
        "stripe_events": 2,
        "reconciliation_runs": 2,
        "notifications": 1,
    }
    for row in gone:
        assert not type(row).objects.filter(pk=row.pk).exists(), row
    for row in kept:
        assert type(row).objects.filter(pk=row.pk).exists(), row


def test_retention_follows_the_database_setting():
    _run(timedelta(days=8), ReconciliationRun.Status.CLEAN)
    GatewayConfig.objects.update_or_create(pk=1, defaults={"retention_days": 10})
    assert prune_old_records()["reconciliation_runs"] == 0
    GatewayConfig.objects.filter(pk=1).update(retention_days=7)
    assert prune_old_records()["reconciliation_runs"] == 1


def test_the_daily_schedules_name_these_tasks():
    by_name = {job.name: job for job in jobs(GatewayConfig())}
    assert by_name["prune old records"].func == "gateway.tasks.prune_old_records"
    assert by_name["daily reconciliation"].func == "gateway.tasks.reconcile_scheduled"
    assert by_name["prune old records"].schedule_type == Schedule.CRON
