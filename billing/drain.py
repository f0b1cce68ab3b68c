"""Applying stored Stripe events: claim, apply, mark done only on success, retry with backoff.

The inbox row is the unit of record: each event keeps its own row, status, attempts, error and
log line. The Stripe object is the unit of work (``billing.subjects``):

- A drain claims a batch of due rows (a conditional UPDATE stamps them with the drain's id and a
  lease, so one worker applies a row at a time and a crashed worker's rows come back), groups
  them by subject, and applies each subject once, in one transaction with marking its rows
  processed. A failure leaves nothing half-applied: every row of the group keeps the error and
  a later ``next_attempt_at``, and never blocks the rows behind it.
- Subscriptions (the renewal traffic) are read ahead: a bounded pool of threads reads the
  batch's subscriptions concurrently, paced to Stripe's rate limit, while the drain applies the
  reads that have come back. One read (the subscription with its latest invoice) settles the
  subscription's events and its invoices'.
- A read settles every event Stripe created before it: the drain remembers the last applied
  read of each subject (``StripeObjectRead``, stamped with Stripe's own clock from the read's
  ``Date`` header) and marks later-delivered events created before it processed without
  reading again. Renewal day's five deliveries per subscription, however shuffled and
  duplicated, cost about one read.
- Between two subjects the drain takes any due event of the people lane (a purchase, a staff
  replay), so a person never waits behind the bulk.
- A drain task runs a few seconds, then makes way: it stops early when another drain waits in
  the queue, or queues its successor behind whatever else the workers have to do (a new
  member's role, an email).
- A drain that stops (budget spent, an error, SIGTERM's graceful stop) releases the rows it
  claimed and did not apply.
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.conf import Conf
from django_q.tasks import async_task
from djstripe.models import Event

from billing.handlers import handle_events, subscription_events_apply
from billing.models import StripeEventInbox, StripeObjectRead
from billing.subjects import SUBSCRIPTION, event_invoice_id, subject_of
from billing.truth import subscription_read_with_latest_invoice
from billing.webhooks import (
    WAKEUP_INTERVAL_SECONDS,
    drain_request,
    drain_started,
    drain_waiting,
)
from ops.ratelimit import TokenBucket
from ops.retry import next_retry_at

log = structlog.get_logger(__name__)

Status = StripeEventInbox.Status
Lane = StripeEventInbox.Lane

# Longer than one batch can take (reads paced to the rate limit, each with a timeout and bounded
# retries, then one transaction per subject).
LEASE = timedelta(minutes=5)
DRAIN_BATCH = 50
# A drain task runs for at most this long (well under the django-q2 task timeout, so it is never
# killed mid-row), then queues its successor behind whatever was queued meanwhile (a new
# member's role, a welcome email): that work waits for one budget at most, and every worker
# that was draining keeps draining.
DRAIN_BUDGET_SECONDS = 15.0
# While deliveries keep arriving another drain waits in the queue (``billing.webhooks``): a
# drain that has run this long then stops without a successor and frees its worker for the
# queue, in which the waiting drain carries on.
DRAIN_SLICE_SECONDS = 5.0
# Stripe stamps events and its ``Date`` header in whole seconds, and stamps the header a moment
# after it read the object: an event settles against a read only when it was created at least
# two stamps earlier (so the read saw it even when answering took up to a second).
STAMP_MARGIN = timedelta(seconds=2)
# How often a busy drain looks for people-lane events between two subjects.
PEOPLE_LOOK_SECONDS = 0.25


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


# -- claiming -----------------------------------------------------------------------------------


def _due(now: datetime) -> Q:
    return Q(status__in=[Status.PENDING, Status.RETRYING], next_attempt_at__lte=now) | Q(
        status=Status.PROCESSING, locked_until__lt=now
    )


def _hold(now: datetime, run: str) -> dict[str, Any]:
    return {
        "status": Status.PROCESSING,
        "locked_until": now + LEASE,
        "attempts": F("attempts") + 1,
        "claimed_by": run,
    }


def claim_one(inbox_id: int, *, now: datetime, force: bool, run: str) -> bool:
    # A row stored as from the other Stripe mode is never applied, not even when forced.
    rows = StripeEventInbox.objects.filter(pk=inbox_id).exclude(status=Status.IGNORED)
    if force:
        rows = rows.exclude(status=Status.PROCESSING, locked_until__gte=now)
    else:
        rows = rows.filter(_due(now))
    return rows.update(**_hold(now, run)) == 1


def claim_batch(*, now: datetime, run: str, limit: int, lane: int | None = None) -> list:
    """Claim up to ``limit`` due rows, people lane first, oldest first; returns those won."""
    due = StripeEventInbox.objects.filter(_due(now))
    if lane is not None:
        due = due.filter(lane=lane)
    candidates = list(
        due.order_by("lane", "received_at", "id").values_list("pk", flat=True)[:limit]
    )
    if not candidates:
        return []
    # The due condition again: of two drains racing for a row, the second UPDATE skips it.
    StripeEventInbox.objects.filter(_due(now), pk__in=candidates).update(**_hold(now, run))
    return list(
        StripeEventInbox.objects.filter(
            pk__in=candidates, claimed_by=run, status=Status.PROCESSING
        ).order_by("lane", "received_at", "id")
    )


def release(run: str) -> int:
    """Give back the rows ``run`` claimed and did not apply, for the next drain."""
    return StripeEventInbox.objects.filter(claimed_by=run, status=Status.PROCESSING).update(
        status=Status.PENDING,
        attempts=F("attempts") - 1,
        locked_until=None,
        next_attempt_at=timezone.now(),
        claimed_by="",
    )


# -- applying -----------------------------------------------------------------------------------


def _settle(rows: list[StripeEventInbox], work: Callable[[], bool]) -> str:
    """Run ``work`` and mark ``rows`` processed in one transaction; on failure every row keeps
    the error and its own retry time. Returns the rows' resulting status."""
    started = timezone.now()
    try:
        with transaction.atomic():
            handled = work()
            StripeEventInbox.objects.filter(
                pk__in=[row.pk for row in rows], status=Status.PROCESSING
            ).update(
                status=Status.PROCESSED,
                processed_at=timezone.now(),
                locked_until=None,
                next_attempt_at=None,
                last_error="",
                traceback="",
                claimed_by="",
            )
    except Exception as exc:
        # After the last attempt a row waits for an operator (admin "Reprocess" or
        # ``replay_stripe_events --failed``).
        error = _scrub(f"{type(exc).__name__}: {exc}")[:2000]
        trace = _scrub(traceback.format_exc())
        status = Status.RETRYING
        for row in rows:
            retry_at = next_retry_at(row.attempts, started)
            row_status = Status.FAILED if retry_at is None else Status.RETRYING
            status = row_status if row_status == Status.FAILED else status
            StripeEventInbox.objects.filter(pk=row.pk).update(
                status=row_status,
                locked_until=None,
                next_attempt_at=retry_at,
                last_error=error,
                traceback=trace,
                claimed_by="",
            )
            log.error(
                "stripe_event_failed",
                **_row_fields(row),
                status=row_status,
                error=type(exc).__name__,
                exc_info=row is rows[0],
            )
        return status
    for row in rows:
        log.info(
            "stripe_event_processed", **_row_fields(row), handled=handled, applied_with=len(rows)
        )
    return Status.PROCESSED


def _row_fields(row: StripeEventInbox) -> dict[str, Any]:
    """What every log line about a row says: the event and the attempt."""
    return {"event_id": row.event_id, "type": row.type, "attempt": row.attempts}


def _events_store(events: list[dict[str, Any]]) -> None:
    """dj-stripe's Event rows, as it stores them, without its handlers: the read applied with
    them did the mirroring."""
    known = set(Event.objects.filter(id__in=[e["id"] for e in events]).values_list("id", flat=True))
    for event in events:
        if event["id"] in known:
            continue
        known.add(event["id"])
        try:
            with transaction.atomic():
                Event._create_from_stripe_object(event, api_key=settings.STRIPE_SECRET_KEY)
        except IntegrityError:
            # Stored meanwhile by the same event id's other row or process.
            if not Event.objects.filter(id=event["id"]).exists():
                raise


def _apply_one(row: StripeEventInbox) -> str:
    def work() -> bool:
        event = json.loads(row.body)
        # dj-stripe stores the Event and mirrors its objects (no-op for a known event id).
        Event.process(event, api_key=settings.STRIPE_SECRET_KEY)
        return handle_events([event])

    return _settle([row], work)


def _apply_object(rows: list[StripeEventInbox], events: list[dict[str, Any]]) -> str:
    """Events about one dispute, charge or customer: dj-stripe mirrors the object once (its
    handler re-reads it), then each of our handlers concerned runs once."""

    def work() -> bool:
        Event.process(events[0], api_key=settings.STRIPE_SECRET_KEY)
        _events_store(events[1:])
        return handle_events(events)

    return _settle(rows, work)


@dataclass
class SubscriptionRead:
    stamp: datetime | None  # Stripe's clock when it answered (its ``Date`` header)
    subscription: dict[str, Any]
    latest_invoice: dict[str, Any] | None


def _stripe_stamp(obj: Any) -> datetime | None:
    response = getattr(obj, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "date":
            try:
                return parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
    return None


def _subscription_read(
    subscription_id: str, limiter: TokenBucket | None = None
) -> SubscriptionRead:
    if limiter is not None:
        limiter.acquire()
    subscription, latest = subscription_read_with_latest_invoice(subscription_id)
    return SubscriptionRead(_stripe_stamp(subscription), subscription, latest)


def _settled_by(event: dict[str, Any], read: StripeObjectRead | None) -> bool:
    """Did this applied read already see what the event announces?"""
    if read is None:
        return False
    created = datetime.fromtimestamp(int(event.get("created") or 0), tz=UTC)
    if created + STAMP_MARGIN > read.read_at:
        return False
    invoice_id = event_invoice_id(event)
    return not invoice_id or invoice_id in read.invoice_ids


def _apply_subscription(
    subject: str,
    rows: list[StripeEventInbox],
    events: list[dict[str, Any]],
    read: Future[SubscriptionRead] | None,
) -> str:
    """A subscription's events (and its invoices'): settled by the last applied read if it saw
    them all, else by ``read`` (made ahead) applied once."""
    subscription_id = subject.split(":", 1)[1]

    def work() -> bool:
        last = StripeObjectRead.objects.select_for_update().filter(subject=subject).first()
        if all(_settled_by(event, last) for event in events):
            _events_store(events)
            return False
        fresh = read.result() if read is not None else _subscription_read(subscription_id)
        if last is not None and (fresh.stamp is None or fresh.stamp <= last.read_at):
            # Another drain applied a read at least as recent: ours may be older, read again.
            fresh = _subscription_read(subscription_id)
        invoice_ids = subscription_events_apply(
            subscription_id=subscription_id,
            events=events,
            subscription=fresh.subscription,
            latest_invoice=fresh.latest_invoice,
        )
        _events_store(events)
        if fresh.stamp is not None:
            StripeObjectRead.objects.update_or_create(
                subject=subject, defaults={"read_at": fresh.stamp, "invoice_ids": invoice_ids}
            )
        return True

    return _settle(rows, work)


# -- the drain ----------------------------------------------------------------------------------


@dataclass
class _Group:
    subject: str | None
    rows: list[StripeEventInbox] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def _groups(rows: list[StripeEventInbox]) -> list[_Group]:
    """The batch's rows by subject, in the order each subject first appears; rows of the people
    lane, unreadable rows and rows without a subject each stand alone."""
    groups: list[_Group] = []
    by_subject: dict[str, _Group] = {}
    for row in rows:
        try:
            event = json.loads(row.body)
        except ValueError:
            groups.append(_Group(None, [row]))
            continue
        subject = subject_of(event) if row.lane == Lane.BULK else None
        if subject is None:
            groups.append(_Group(None, [row], [event]))
            continue
        if subject not in by_subject:
            by_subject[subject] = _Group(subject)
            groups.append(by_subject[subject])
        by_subject[subject].rows.append(row)
        by_subject[subject].events.append(event)
    return groups


def stripe_read_limiter() -> TokenBucket:
    """This process's share of Stripe's rate limit (every worker process drains)."""
    workers = max(1, int(settings.Q_CLUSTER.get("workers") or 1))
    return TokenBucket(settings.STRIPE_API_RATE_PER_SECOND / workers, name="STRIPE_API_RATE")


class Drain:
    """One drain run: claims under one id, reads ahead on a bounded pool, releases on exit."""

    def __init__(self, *, budget: float = DRAIN_BUDGET_SECONDS) -> None:
        self.run = uuid.uuid4().hex
        self.started = time.monotonic()
        self.deadline = self.started + budget
        self.processed = 0
        self.limiter = stripe_read_limiter()
        self.next_people_look = 0.0

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    def people_first(self) -> None:
        """Apply every due event of the people lane now, one by one (looked for at most every
        PEOPLE_LOOK_SECONDS: one indexed query)."""
        if time.monotonic() < self.next_people_look:
            return
        self.next_people_look = time.monotonic() + PEOPLE_LOOK_SECONDS
        while not self.out_of_time():
            rows = claim_batch(now=timezone.now(), run=self.run, limit=5, lane=Lane.PEOPLE)
            if not rows:
                return
            for row in rows:
                self.processed += _apply_one(row) == Status.PROCESSED

    def batch(self, rows: list[StripeEventInbox], pool: ThreadPoolExecutor) -> bool:
        """Apply one claimed batch; False if nothing in it could be applied."""
        groups = _groups(rows)
        subscriptions = [g for g in groups if (g.subject or "").startswith(f"{SUBSCRIPTION}:")]
        last_reads = StripeObjectRead.objects.in_bulk(
            [g.subject for g in subscriptions], field_name="subject"
        )
        reads: dict[str, Future[SubscriptionRead]] = {}
        for group in subscriptions:
            last = last_reads.get(group.subject)
            if not all(_settled_by(event, last) for event in group.events):
                reads[group.subject] = pool.submit(
                    _subscription_read, group.subject.split(":", 1)[1], self.limiter
                )
        applied = False
        for group in self._in_turn(groups):
            if group.subject is None:
                outcome = _apply_one(group.rows[0])  # an unreadable body fails here, recorded
            elif group.subject.startswith(f"{SUBSCRIPTION}:"):
                outcome = _apply_subscription(
                    group.subject, group.rows, group.events, reads.get(group.subject)
                )
            else:
                outcome = _apply_object(group.rows, group.events)
            if outcome == Status.PROCESSED:
                self.processed += len(group.rows)
                applied = True
        return applied

    def _in_turn(self, groups: list[_Group]) -> Iterator[_Group]:
        for group in groups:
            self.people_first()
            if self.out_of_time():
                return
            yield group


def drain_stripe_events(*, budget: float = DRAIN_BUDGET_SECONDS) -> int:
    """Apply every due row, people first, then by subject; run on wake-up and every minute."""
    drain_started()
    drain = Drain(budget=budget)
    idle_until: float | None = None
    pool = ThreadPoolExecutor(
        max_workers=max(1, settings.STRIPE_READ_CONCURRENCY), thread_name_prefix="stripe-read"
    )
    more = False
    try:
        while not drain.out_of_time():
            elapsed = time.monotonic() - drain.started
            if not Conf.SYNC and elapsed >= DRAIN_SLICE_SECONDS and drain_waiting():
                break
            rows = claim_batch(now=timezone.now(), run=drain.run, limit=DRAIN_BATCH)
            more = bool(rows)
            if not rows:
                # A web process skips wake-ups for WAKEUP_INTERVAL_SECONDS after enqueueing
                # this task, so events stored in that window rely on this drain: keep looking
                # that long, or the tail of a burst waits for the minute schedule.
                if Conf.SYNC:
                    break
                if idle_until is None:
                    idle_until = time.monotonic() + WAKEUP_INTERVAL_SECONDS
                if time.monotonic() >= idle_until:
                    break
                time.sleep(0.05)
                continue
            idle_until = None
            if not drain.batch(rows, pool):
                # Everything left is failing or held elsewhere: try again on the next tick.
                more = False
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        released = release(drain.run)
        if released:
            log.info("stripe_events_released", count=released)
    if more and drain.out_of_time() and not Conf.SYNC:
        # Out of budget with work left: this drain's successor, behind the work queued meanwhile.
        async_task("billing.tasks.drain_stripe_events")
    return drain.processed


def replay_request(inbox_ids: list[int]) -> int:
    """Queue stored events to be applied again, in the people lane, and wake a worker.

    Rows stored as from the other Stripe mode are never applied; a row a drain holds right now
    is left to it. Returns how many rows were queued.
    """
    now = timezone.now()
    queued = (
        StripeEventInbox.objects.filter(pk__in=inbox_ids)
        .exclude(status=Status.IGNORED)
        .exclude(status=Status.PROCESSING, locked_until__gte=now)
        .update(
            status=Status.PENDING,
            lane=Lane.PEOPLE,
            next_attempt_at=now,
            locked_until=None,
            claimed_by="",
        )
    )
    if queued:
        drain_request()
    return queued


def process_stripe_event(inbox_id: int, force: bool = False) -> str:
    """Apply one stored event. Returns the row's resulting status (or "skipped").

    ``force`` reprocesses a row whatever its state (the replay command) unless another worker
    holds it right now or it was stored as from the other Stripe mode. Handlers decide from
    Stripe's current state, so a replay is safe.
    """
    if not claim_one(inbox_id, now=timezone.now(), force=force, run=uuid.uuid4().hex):
        return "skipped"
    return _apply_one(StripeEventInbox.objects.get(pk=inbox_id))
