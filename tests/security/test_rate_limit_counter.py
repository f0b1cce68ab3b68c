"""Rate limits are exactly as configured on every supported cache.

Without Redis the counters live in the database cache. Django's own ``DatabaseCache.incr`` is
get-then-set with the default timeout: parallel requests lost counts, and every increment
pushed the expiry to five minutes from now, so "5 per hour" meant "5 per 5 minutes of quiet".
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

DB_CACHE = {
    "default": {"BACKEND": "ops.cache.DatabaseCache", "LOCATION": "gateway_cache_test"},
}


@pytest.fixture
def db_cache(settings, django_db_blocker):
    settings.CACHES = DB_CACHE
    with django_db_blocker.unblock():
        call_command("createcachetable", verbosity=0)
    cache = caches["default"]
    cache.clear()
    yield cache
    cache.clear()
    caches["default"].close()


def _expiry(key: str) -> object:
    cache = caches["default"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT expires FROM gateway_cache_test WHERE cache_key = %s",
            [cache.make_and_validate_key(key)],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_an_increment_keeps_the_window_it_was_added_with(db_cache):
    assert db_cache.add("hits", 1, 3600)
    added = _expiry("hits")
    assert db_cache.incr("hits") == 2
    assert db_cache.incr("hits", 5) == 7
    assert db_cache.get("hits") == 7
    assert _expiry("hits") == added  # not the cache's 300-second default


@pytest.mark.django_db
def test_an_increment_of_a_missing_or_expired_key_is_an_error(db_cache):
    with pytest.raises(ValueError):
        db_cache.incr("never-set")
    db_cache.set("gone", 3, 1)
    table = db_cache._table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET expires = %s",  # noqa: S608
            [timezone.now() - timedelta(seconds=5)],
        )
    with pytest.raises(ValueError):
        db_cache.incr("gone")


@pytest.mark.django_db
def test_an_hourly_limit_still_holds_after_the_cache_default_timeout(db_cache, settings):
    """Five logins an hour from one address: counters stored by the limit live for the hour,
    not for the cache's five-minute default, so the sixth attempt ten minutes later is refused."""
    settings.RATELIMIT_LOGIN = settings.RATELIMIT_LOGIN_ADDRESS = "5/h"
    client = Client()
    url = reverse("members:login")
    for n in range(5):
        assert client.post(url, {"email": f"u{n}@example.org", "password": "x"}).status_code != 429
    ten_minutes_later = timezone.now() + timedelta(minutes=10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM gateway_cache_test")
        expiries = [row[0] for row in cursor.fetchall()]
        # What the cache itself would have culled by then.
        cursor.execute("DELETE FROM gateway_cache_test WHERE expires < %s", [ten_minutes_later])
        culled = cursor.rowcount
    assert expiries and culled == 0
    assert client.post(url, {"email": "u9@example.org", "password": "x"}).status_code == 429


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_parallel_posts_are_each_counted(db_cache, settings, live_server):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency test needs PostgreSQL: set DATABASE_URL=postgres://…")
    settings.RATELIMIT_LOGIN_ADDRESS = "10/h"
    url = f"{live_server.url}{reverse('members:login')}"

    def post(n: int) -> int:
        session = requests.Session()
        page = session.get(url, timeout=60)
        token = page.cookies["csrftoken"]
        return session.post(
            url,
            data={"email": f"p{n}@example.org", "password": "x", "csrfmiddlewaretoken": token},
            headers={"Referer": url},
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(post, range(50)))
    connections.close_all()
    # Exactly the configured ten get through; every other one of the fifty is refused.
    assert statuses.count(429) == 40, statuses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_parallel_increments_lose_nothing(db_cache):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency test needs PostgreSQL: set DATABASE_URL=postgres://…")
    assert db_cache.add("burst", 0, 3600)

    def bump(_: int) -> int:
        try:
            return caches["default"].incr("burst")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=50) as pool:
        values = list(pool.map(bump, range(50)))
    assert sorted(values) == list(range(1, 51))
    assert db_cache.get("burst") == 50


def test_redis_counts_natively_and_keeps_the_window(settings):
    """With REDIS_URL the cache is Redis, whose INCR is atomic and keeps the key's TTL."""
    import redis

    url = "redis://127.0.0.1:6379/8"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at 127.0.0.1:6379 is not reachable ({exc})")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    }
    cache = caches["default"]
    cache.delete("burst")
    assert cache.add("burst", 0, 3600)
    with ThreadPoolExecutor(max_workers=50) as pool:
        values = list(pool.map(lambda _: cache.incr("burst"), range(50)))
    assert sorted(values) == list(range(1, 51))
    ttl = redis.Redis.from_url(url).ttl(cache.make_and_validate_key("burst"))
    assert 3500 < ttl <= 3600
    cache.delete("burst")
