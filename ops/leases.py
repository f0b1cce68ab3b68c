"""Named leases: a row in ``ops.Lease`` held until it expires, claimed by conditional UPDATE.

A holder renews well before expiry; a holder that dies (even by SIGKILL) simply stops renewing,
and anyone may take the lease once ``expires_at`` has passed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q

from ops.models import Lease


def lease_acquire(*, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
    """Take or renew ``name`` for ``holder`` until ``now + ttl``; True if we hold it now."""
    if not Lease.objects.filter(name=name).exists():
        try:
            with transaction.atomic():
                Lease.objects.create(name=name, holder="", expires_at=now)
        except IntegrityError:
            pass  # another process created it first; the UPDATE below decides
    claimed = (
        Lease.objects.filter(name=name)
        .filter(Q(holder=holder) | Q(expires_at__lte=now))
        .update(holder=holder, expires_at=now + ttl)
    )
    return claimed == 1


def lease_release(*, name: str, holder: str, now: datetime) -> bool:
    """Give the lease up at once so a waiting process need not wait for expiry."""
    return Lease.objects.filter(name=name, holder=holder).update(holder="", expires_at=now) == 1
