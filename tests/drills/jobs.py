"""Task functions the drills enqueue through django-q2 by import path (the worker imports this).

``slow_apply`` stands for any real task: it takes a few seconds, then applies its change
idempotently (a unique key), so a redelivered task is applied once. Every start is recorded,
which is how a drill sees a redelivery.
"""

from __future__ import annotations

import os
import time

from django.db import connection

TABLES = (
    "CREATE TABLE IF NOT EXISTS drill_attempt (key TEXT, pid INTEGER, started REAL)",
    "CREATE TABLE IF NOT EXISTS drill_applied (key TEXT PRIMARY KEY, pid INTEGER, at REAL)",
)


def slow_apply(key: str, seconds: float) -> str:
    with connection.cursor() as cursor:
        for statement in TABLES:
            cursor.execute(statement)
        cursor.execute(
            "INSERT INTO drill_attempt VALUES (%s, %s, %s)", [key, os.getpid(), time.time()]
        )
    time.sleep(seconds)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO drill_applied VALUES (%s, %s, %s) ON CONFLICT (key) DO NOTHING",
            [key, os.getpid(), time.time()],
        )
    return key
