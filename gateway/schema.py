"""What ``manage.py migrate`` creates besides the models' tables.

The database cache (``CACHES`` without ``REDIS_URL``) keeps its entries in a table that no
migration describes. Creating it after every ``migrate`` makes ``migrate`` the whole schema
step: a fresh database, a switch from Redis to the database cache, or a restored dump that
lacks the table all get it with the command an operator runs anyway. django-q2's ORM broker
keeps its queue in a model (``django_q.OrmQ``), so its migrations already cover it.
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.cache.backends.db import BaseDatabaseCache
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.utils import DatabaseError


def database_caches() -> list[BaseDatabaseCache]:
    """Every configured cache that keeps its entries in a database table."""
    return [
        caches[alias]
        for alias in settings.CACHES
        if isinstance(caches[alias], BaseDatabaseCache)  # Django's or ops.cache's
    ]


def missing_cache_tables(database: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Database cache tables that ``database`` should hold and does not.

    Says nothing for a database that was never migrated: ``migrate`` is the next step there
    and creates every table at once.
    """
    wanted = [
        cache._table  # noqa: SLF001 - the table name createcachetable uses too
        for cache in database_caches()
        if router.allow_migrate_model(database, cache.cache_model_class)
    ]
    if not wanted:
        return []
    try:
        with connections[database].cursor() as cursor:
            existing = set(connections[database].introspection.table_names(cursor))
    except DatabaseError:
        return []  # an unreachable database is reported by everything else that needs it
    if get_user_model()._meta.db_table not in existing:
        return []  # never migrated
    return [table for table in wanted if table not in existing]


def create_cache_tables(
    *, app_config: AppConfig, using: str = DEFAULT_DB_ALIAS, verbosity: int = 0, **_: Any
) -> None:
    """post_migrate receiver: the database cache's table (idempotent, like the command).

    post_migrate is sent once per app with models; the gateway app has none, so this acts
    when the app every deployment has (members) comes by, matched by label: a sender object
    would not match once a test swapped the app registry's configs.
    """
    if app_config.label == "members" and database_caches():
        call_command("createcachetable", database=using, verbosity=verbosity)
