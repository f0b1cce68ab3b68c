"""``/health/live`` touches nothing; ``/health/ready`` says which part failed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connections
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper
from django.utils import timezone

from billing.models import StripeEventInbox
from ops.models import Heartbeat, ReconciliationRun
from tests.processes import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def all_fine():
    now = timezone.now()
    Heartbeat.objects.create(name="worker", beat_at=now - timedelta(seconds=40))
    Heartbeat.objects.create(
        name="bot",
        beat_at=now - timedelta(seconds=20),
        details={"selfcheck": {"ok": True, "problems": []}},
    )
    ReconciliationRun.objects.create(
        status=ReconciliationRun.Status.CLEAN,
        started_at=now - timedelta(hours=3, minutes=2),
        finished_at=now - timedelta(hours=3),
    )


def inbox_event(event_id: str, *, age: timedelta, status: str = "pending") -> StripeEventInbox:
    return StripeEventInbox.objects.create(
        event_id=event_id,
        type="invoice.paid",
        body="{}",
        received_at=timezone.now() - age,
        status=status,
    )


def test_live_answers_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        for url in ("/health", "/health/live"):
            response = client.get(url)
            assert response.status_code == 200
            assert response.json() == {"status": "ok"}


def test_ready_is_200_with_a_json_result_per_check(client, all_fine):
    response = client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    checks = body["checks"]
    assert {
        "database",
        "cache",
        "worker",
        "bot",
        "bot_selfcheck",
        "reconciliation",
        "webhook_backlog",
    } <= set(checks)
    assert all(check["ok"] for check in checks.values())
    assert 30 <= checks["worker"]["age_seconds"] < 60
    assert checks["bot"]["selfcheck"] == {"ok": True, "problems": []}
    assert checks["reconciliation"]["last_status"] == "clean"
    assert checks["webhook_backlog"]["pending"] == 0
    assert response["Cache-Control"].startswith("max-age=0")


def test_ready_is_503_naming_the_database_when_it_is_unreachable(client, all_fine):
    # A real PostgreSQL connection attempt to a port nobody listens on.
    settings_dict = {
        **connections["default"].settings_dict,
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "gateway",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "OPTIONS": {"connect_timeout": 2},
        "CONN_MAX_AGE": 0,
    }
    original = connections["default"]
    connections["default"] = PostgresWrapper(settings_dict, alias="default")
    try:
        response = client.get("/health/ready")
    finally:
        connections["default"].close()
        connections["default"] = original

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert "database" in body["failing"]
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"] == "OperationalError"
    assert body["checks"]["worker"]["error"] == "database unavailable"


def test_ready_is_503_naming_the_worker_when_its_heartbeat_is_stale(client, all_fine):
    Heartbeat.objects.filter(name="worker").update(beat_at=timezone.now() - timedelta(minutes=7))

    response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["worker"]
    assert body["checks"]["worker"]["ok"] is False
    assert body["checks"]["worker"]["age_seconds"] >= 420


def test_ready_is_503_when_the_worker_never_ran(client, all_fine):
    Heartbeat.objects.filter(name="worker").delete()
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["error"] == "no worker heartbeat yet"


def test_ready_is_503_naming_the_bot_when_it_went_quiet(client, all_fine):
    Heartbeat.objects.filter(name="bot").update(beat_at=timezone.now() - timedelta(minutes=6))
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["bot"]


def test_failed_bot_selfcheck_is_a_warning_not_an_outage(client, all_fine):
    Heartbeat.objects.filter(name="bot").update(
        details={"selfcheck": {"ok": False, "problems": ["bot role below Knight"]}}
    )
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["warnings"] == ["bot_selfcheck"]
    assert body["checks"]["bot"]["selfcheck"]["problems"] == ["bot role below Knight"]


def test_old_reconciliation_is_a_warning(client, all_fine):
    ReconciliationRun.objects.update(finished_at=timezone.now() - timedelta(hours=27))
    ReconciliationRun.objects.create(
        status=ReconciliationRun.Status.FAILED, finished_at=timezone.now()
    )
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["warnings"] == ["reconciliation"]
    assert body["checks"]["reconciliation"]["last_status"] == "clean"


def test_webhook_backlog_older_than_the_limit_fails_readiness(client, all_fine):
    inbox_event("evt_fresh", age=timedelta(minutes=1))
    inbox_event("evt_done", age=timedelta(hours=2), status="processed")
    assert client.get("/health/ready").status_code == 200

    inbox_event("evt_stuck", age=timedelta(minutes=20), status="retrying")
    response = client.get("/health/ready")

    assert response.status_code == 503
    backlog = response.json()["checks"]["webhook_backlog"]
    assert response.json()["failing"] == ["webhook_backlog"]
    assert backlog["pending"] == 2
    assert backlog["oldest_age_seconds"] >= 1200


PUBLIC_ADDRESS = "203.0.113.9"


def test_ready_tells_the_public_only_the_status(client, all_fine):
    healthy = client.get("/health/ready", REMOTE_ADDR=PUBLIC_ADDRESS)
    Heartbeat.objects.filter(name="worker").delete()
    failing = client.get("/health/ready", REMOTE_ADDR=PUBLIC_ADDRESS)

    # Uptime monitors outside still see the outcome...
    assert (healthy.status_code, healthy.json()) == (200, {"status": "ok"})
    assert (failing.status_code, failing.json()) == (503, {"status": "fail"})
    # ...but not which parts exist, which fail, or their ages and errors.
    assert b"worker" not in failing.content and b"heartbeat" not in failing.content


def test_ready_details_are_for_staff_and_the_host_itself(client, all_fine):
    from members.models import User

    staff = User.objects.create_user("ops@example.com", "a long staff passphrase 42")
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    member = User.objects.create_user("kay@example.com", "a long member passphrase 42")

    loopback = client.get("/health/ready", REMOTE_ADDR="::1")
    client.force_login(member)
    as_member = client.get("/health/ready", REMOTE_ADDR=PUBLIC_ADDRESS)
    client.force_login(staff)
    as_staff = client.get("/health/ready", REMOTE_ADDR=PUBLIC_ADDRESS)

    assert "worker" in loopback.json()["checks"]
    assert as_member.json() == {"status": "ok"}
    assert "worker" in as_staff.json()["checks"]
