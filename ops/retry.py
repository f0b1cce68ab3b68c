"""The one retry schedule for work we own (Stripe event processing, notification delivery).

1 min, 5 min, 15 min, 1 h, 4 h: a short outage is absorbed within minutes, a long one within
the afternoon; after the last attempt the row waits for an operator.
"""

from __future__ import annotations

from datetime import datetime, timedelta

RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=4),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1


def next_retry_at(attempts: int, now: datetime) -> datetime | None:
    """When to try again after ``attempts`` failed attempts, or None to give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return now + RETRY_DELAYS[attempts - 1]
