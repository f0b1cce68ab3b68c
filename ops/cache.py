"""The database cache, with a counter that is exact under concurrency.

Django's ``DatabaseCache.incr`` is the base class's get-then-set: two workers incrementing at
once lose a count, and the set writes the *default* timeout, so a "5 per hour" rate limit
(django-ratelimit adds the key with a one-hour expiry, then increments it) quietly became
"5 per 5 minutes of quiet". Rate limits and the Discord circuit breaker count in this cache
when no Redis is configured (Redis's own ``INCR`` is atomic and keeps the expiry), so the
counter here is one transaction that locks the row, adds, and leaves ``expires`` untouched.
"""

from __future__ import annotations

import base64
import pickle
from typing import Any

from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import connections, models, router, transaction
from django.utils import timezone


class DatabaseCache(DjangoDatabaseCache):
    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` atomically and keep the key's expiry; ``ValueError`` if it is missing.

        PostgreSQL: ``SELECT … FOR UPDATE`` serialises concurrent increments of one key.
        SQLite: the project's connections open write transactions with ``BEGIN IMMEDIATE``
        (``transaction_mode``), which takes the database's write lock before the read.
        """
        key = self.make_and_validate_key(key, version=version)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        table = connection.ops.quote_name(self._table)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        with transaction.atomic(using=db), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {connection.ops.quote_name('value')}, "  # noqa: S608 - table name quoted
                f"{connection.ops.quote_name('expires')} FROM {table} "
                f"WHERE {connection.ops.quote_name('cache_key')} = %s{lock}",
                [key],
            )
            row = cursor.fetchone()
            if row is None or self._expired(connection, row[1]):
                raise ValueError(f"Key '{key}' not found")
            value = pickle.loads(base64.b64decode(row[0].encode())) + delta  # noqa: S301 - ours
            encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
            cursor.execute(
                f"UPDATE {table} SET {connection.ops.quote_name('value')} = %s "  # noqa: S608
                f"WHERE {connection.ops.quote_name('cache_key')} = %s",
                [encoded, key],
            )
        return value

    @staticmethod
    def _expired(connection: Any, expires: Any) -> bool:
        # As Django's own get_many reads the column: the backend's converters make it aware.
        expression = models.Expression(output_field=models.DateTimeField())
        for converter in connection.ops.get_db_converters(
            expression
        ) + expression.get_db_converters(connection):
            expires = converter(expires, expression, connection)
        return expires < timezone.now()
