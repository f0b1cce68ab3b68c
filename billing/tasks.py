"""Applying stored Stripe events: claim, process, mark done only on success, retry with backoff.

The inbox row is the unit of work. A conditional UPDATE claims it (one worker at a time, a
lease so a crashed worker's row comes back), dj-stripe mirrors the event and its objects, our
handlers converge members and teams, and only then is the row marked processed — all in one
transaction, so a failure leaves nothing half-applied and the row keeps its error and
traceback for the operator. A failing row gets a later ``next_attempt_at`` and never blocks
the rows behind it.
"""

from __future__ import annotations

import json
import time
import traceback
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.conf import Conf
from djstripe.models import Event

from billing.handlers import handle_event
from billing.models import StripeEventInbox
from billing.tick import billing_tick as run_tick
from billing.webhooks import WAKEUP_INTERVAL_SECONDS
from ops.retry import next_retry_at

log = structlog.get_logger(__name__)

Status = StripeEventInbox.Status

# Longer than one event can take (a few Stripe calls, each with a timeout and bounded retries).
LEASE = timedelta(minutes=5)
DRAIN_BATCH = 50
# Stay under the django-q2 task timeout (60 s by default) so a drain is never killed mid-row.
DRAIN_BUDGET_SECONDS = 40.0


def _scrub(text: str) -> str:
    """Keep secrets out of the stored error (some library messages quote the API key)."""
    for secret in (settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def mode_mismatch_reason() -> str:
    """Why an ``IGNORED`` row is never applied, in words for the admin and the replay command."""
    mode, other = ("live", "test") if settings.STRIPE_LIVE_MODE else ("test", "live")
    return (
        f"they were sent in {other} mode and this gateway runs in {mode} mode, so they are "
        "never applied"
    )


def _claim(inbox_id: int, *, now: datetime, force: bool) -> bool:
    # A row stored as from the other Stripe mode is never applied, not even when forced.
    rows = StripeEventInbox.objects.filter(pk=inbox_id).exclude(status=Status.IGNORED)
    running = Q(status=Status.PROCESSING, locked_until__gte=now)
    if force:
        rows = rows.exclude(running)
    else:
        rows = rows.filter(
            Q(status__in=[Status.PENDING, Status.RETRYING], next_attempt_at__lte=now)
            | Q(status=Status.PROCESSING, locked_until__lt=now)
        )
    return (
        rows.update(status=Status.PROCESSING, locked_until=now + LEASE, attempts=F("attempts") + 1)
        == 1
    )


def process_stripe_event(inbox_id: int, force: bool = False) -> str:
    """Apply one stored event. Returns the row's resulting status (or "skipped").

    ``force`` reprocesses a row whatever its state (admin action, replay command) unless
    another worker holds it right now or it was stored as from the other Stripe mode.
    Handlers decide from Stripe's current state, so a replay is safe.
    """
    now = timezone.now()
    if not _claim(inbox_id, now=now, force=force):
        return "skipped"
    row = StripeEventInbox.objects.get(pk=inbox_id)
    bound = log.bind(event_id=row.event_id, type=row.type, attempt=row.attempts)
    try:
        event = json.loads(row.body)
        with transaction.atomic():
            # dj-stripe stores the Event and mirrors its objects (no-op for a known event id).
            Event.process(event, api_key=settings.STRIPE_SECRET_KEY)
            handled = handle_event(event)
            StripeEventInbox.objects.filter(pk=row.pk, status=Status.PROCESSING).update(
                status=Status.PROCESSED,
                processed_at=timezone.now(),
                locked_until=None,
                next_attempt_at=None,
                last_error="",
                traceback="",
            )
    except Exception as exc:
        # After the last attempt the row waits for an operator (admin "Reprocess" or
        # ``replay_stripe_events --failed``).
        retry_at = next_retry_at(row.attempts, now)
        status = Status.FAILED if retry_at is None else Status.RETRYING
        StripeEventInbox.objects.filter(pk=row.pk).update(
            status=status,
            locked_until=None,
            next_attempt_at=retry_at,
            last_error=_scrub(f"{type(exc).__name__}: {exc}")[:2000],
            traceback=_scrub(traceback.format_exc()),
        )
        bound.error("stripe_event_failed", status=status, error=type(exc).__name__, exc_info=True)
        return status
    bound.info("stripe_event_processed", handled=handled)
    return Status.PROCESSED


def drain_stripe_events() -> int:
    """Process every due row, oldest first; run on wake-up and every minute by schedule."""
    started = time.monotonic()
    processed = 0
    idle_until: float | None = None
    while time.monotonic() - started < DRAIN_BUDGET_SECONDS:
        now = timezone.now()
        due = list(
            StripeEventInbox.objects.filter(
                Q(status__in=[Status.PENDING, Status.RETRYING], next_attempt_at__lte=now)
                | Q(status=Status.PROCESSING, locked_until__lt=now)
            )
            .order_by("received_at", "id")
            .values_list("pk", flat=True)[:DRAIN_BATCH]
        )
        if not due:
            # A web process skips wake-ups for WAKEUP_INTERVAL_SECONDS after enqueueing this
            # task, so events stored in that window rely on this drain: keep looking that long,
            # or the tail of a burst (checkout.session.completed) waits for the minute schedule.
            if Conf.SYNC:
                break
            if idle_until is None:
                idle_until = time.monotonic() + WAKEUP_INTERVAL_SECONDS
            if time.monotonic() >= idle_until:
                break
            time.sleep(0.1)
            continue
        idle_until = None
        outcomes = [process_stripe_event(pk) for pk in due]
        processed += sum(1 for outcome in outcomes if outcome == Status.PROCESSED)
        if all(outcome != Status.PROCESSED for outcome in outcomes):
            # Everything left is failing or held elsewhere: try again on the next tick.
            break
    return processed


def billing_tick() -> str:
    """The five-minute schedule (``ops/schedules.py``): due failure-timeline transitions,
    reminders and claim reminders, as of now (``billing/tick.py``)."""
    report = run_tick()
    return "; ".join(report.lines())
