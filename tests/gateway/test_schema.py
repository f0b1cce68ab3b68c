"""``migrate`` is the whole schema step: the database cache's table comes with it, and a
process refuses to start, saying why, when the table is missing."""

from __future__ import annotations

import importlib
import sqlite3
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from gateway.checks import check_cache_table
from tests.processes import base_env, manage

TABLE = "gateway_cache_schema_test"


@pytest.fixture
def database_cache(settings, db):
    """The production cache configuration (no REDIS_URL), on a table no test created."""
    settings.CACHES = {
        "default": {
            "BACKEND": "ops.cache.DatabaseCache",
            "LOCATION": TABLE,
        }
    }
    # Django's setting_changed handler rebuilds the cache handlers, here and on restore.


def tables() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


@pytest.mark.slow
def test_migrate_creates_the_database_cache_table(tmp_path):
    """A real ``manage.py migrate`` in its own process, on an empty database, with the database
    cache configured (no REDIS_URL): the table exists afterwards and ``check`` passes. (No
    in-process test database: building one would cost the slow pass a full migration.)"""
    database = tmp_path / "fresh.sqlite3"
    env = base_env(database, DJANGO_SETTINGS_MODULE="tests.gateway.process_settings")
    for command in (["migrate", "--run-syncdb", "--noinput"], ["check"]):
        done = manage(env, *command)
        assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(database) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "gateway_cache" in names


def test_missing_table_stops_a_process_start_with_the_remedy(database_cache):
    (error,) = check_cache_table()
    assert error.id == "gateway.E008"
    assert TABLE in error.msg
    assert "manage.py migrate" in error.hint


def test_migrate_itself_is_not_stopped_by_the_missing_table(database_cache):
    # migrate runs the checks for the database it migrates before creating anything.
    assert check_cache_table(databases=["default"]) == []


def test_redis_or_local_memory_caches_need_no_table(settings, db):
    assert "gateway_cache" not in tables()
    assert check_cache_table() == []


def test_the_web_process_refuses_to_boot_without_the_table(database_cache):
    sys.modules.pop("gateway.wsgi", None)  # gunicorn's worker imports it afresh
    with pytest.raises(ImproperlyConfigured, match="manage.py migrate"):
        importlib.import_module("gateway.wsgi")
