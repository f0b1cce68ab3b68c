"""``migrate`` is the whole schema step: the database cache's table comes with it, and a
process refuses to start, saying why, when the table is missing."""

from __future__ import annotations

import importlib
import sys
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from gateway.checks import check_cache_table
from members.models import User
from ops.models import Heartbeat, ReconciliationRun
from tests.members.conftest import PASSWORD

pytestmark = pytest.mark.django_db

TABLE = "gateway_cache_schema_test"


@pytest.fixture
def database_cache(settings):
    """The production cache configuration (no REDIS_URL), on a table no test created."""
    settings.CACHES = {
        "default": {
            "BACKEND": "gateway.cache.DatabaseCache",
            "LOCATION": TABLE,
        }
    }
    # Django's setting_changed handler rebuilds the cache handlers, here and on restore.


def tables() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


def test_migrate_creates_the_database_cache_table(database_cache):
    assert TABLE not in tables()
    assert [error.id for error in check_cache_table()] == ["gateway.E008"]

    call_command("migrate", verbosity=0)

    assert TABLE in tables()
    assert check_cache_table() == []


def test_after_migrate_sign_up_login_and_readiness_work(database_cache, client):
    call_command("migrate", verbosity=0)
    now = timezone.now()
    Heartbeat.objects.create(name="worker", beat_at=now)
    Heartbeat.objects.create(name="bot", beat_at=now, details={"selfcheck": {"ok": True}})
    ReconciliationRun.objects.create(
        status=ReconciliationRun.Status.CLEAN,
        started_at=now - timedelta(minutes=2),
        finished_at=now,
    )

    signed_up = client.post(
        reverse("members:signup"),
        {"email": "first@example.org", "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert signed_up.status_code == 302
    client.logout()
    logged_in = client.post(
        reverse("members:login"), {"email": "first@example.org", "password": PASSWORD}
    )
    assert logged_in.status_code == 302
    assert logged_in["Location"] == reverse("members:dashboard")
    assert User.objects.filter(email="first@example.org").exists()
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.json()


def test_missing_table_stops_a_process_start_with_the_remedy(database_cache):
    (error,) = check_cache_table()
    assert error.id == "gateway.E008"
    assert TABLE in error.msg
    assert "manage.py migrate" in error.hint


def test_migrate_itself_is_not_stopped_by_the_missing_table(database_cache):
    # migrate runs the checks for the database it migrates before creating anything.
    assert check_cache_table(databases=["default"]) == []


def test_redis_or_local_memory_caches_need_no_table(settings):
    assert "gateway_cache" not in tables()
    assert check_cache_table() == []


def test_the_web_process_refuses_to_boot_without_the_table(database_cache):
    sys.modules.pop("gateway.wsgi", None)  # gunicorn's worker imports it afresh
    with pytest.raises(ImproperlyConfigured, match="manage.py migrate"):
        importlib.import_module("gateway.wsgi")
