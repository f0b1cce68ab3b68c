"""``POST /stripe/webhook/``: verify, store once, answer 200; the worker does the rest.

The acknowledgement path is deliberately tiny: ``verify_header`` on the
raw body (not ``construct_event``, which builds a whole object tree), ``json.loads``, and one
``INSERT … ON CONFLICT DO NOTHING`` into ``StripeEventInbox``. No Stripe API call, no
transaction held open, no task row per event: the inbox row *is* the queue.
"""

from __future__ import annotations

import json
import time
from typing import Any

import stripe
import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_q.conf import Conf
from django_q.tasks import async_task

from billing.models import StripeEventInbox
from billing.subjects import lane_of

log = structlog.get_logger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 300
# Under a burst each web process enqueues at most one drain task per interval; the drain
# loops until the inbox is empty, and the one-minute schedule catches anything left over.
WAKEUP_INTERVAL_SECONDS = 1.0
DRAIN_QUEUED_KEY = "billing:drain-queued"
DRAIN_QUEUED_SECONDS = 60
_last_wakeup = 0.0


def _column(value: object) -> str:
    """A value for a short text column. A signed event is stored whatever its shape (refusing
    it would make Stripe retry for days), but PostgreSQL text cannot hold a NUL byte."""
    return str(value).replace("\x00", "")[:255]


def _bad_request(error: str) -> JsonResponse:
    return JsonResponse({"error": error}, status=400)


def inbox_insert(*, event: dict[str, Any], body: str, status: str) -> int | None:
    """Store one verified event; return the new row id, or None if the id was already stored.

    One statement, whatever the concurrency: the unique index decides which delivery wins and
    every other one is a no-op (PostgreSQL and SQLite ≥ 3.35 both support this syntax).
    """
    now = timezone.now()
    table = StripeEventInbox._meta.db_table
    # A signed event may still have any shape (an API version we do not know, a bug at
    # Stripe): the acknowledgement must store it, never crash on it.
    data = event.get("data")
    data_object = data.get("object") if isinstance(data, dict) else None
    object_id = data_object.get("id") if isinstance(data_object, dict) else None
    sql = (
        f"INSERT INTO {table} "  # noqa: S608 - table name from model metadata, values bound
        "(event_id, type, livemode, object_id, body, received_at, status, attempts, "
        "next_attempt_at, last_error, traceback, lane, claimed_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s, '', '', %s, '') "
        "ON CONFLICT (event_id) DO NOTHING RETURNING id"
    )
    stamp = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                _column(event["id"]),
                _column(event.get("type", "")),
                bool(event.get("livemode")),
                _column(object_id or ""),
                body,
                stamp,
                status,
                stamp if status == StripeEventInbox.Status.PENDING else None,
                lane_of(event),
            ],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _wake_worker() -> None:
    global _last_wakeup
    now = time.monotonic()
    if not Conf.SYNC and now - _last_wakeup < WAKEUP_INTERVAL_SECONDS:
        return
    _last_wakeup = now
    drain_request()


def drain_request() -> None:
    """Queue a drain task unless one already waits in the queue.

    One waiting drain is enough (it takes everything due when it starts, and clears the mark
    then); more would only stand in the queue in front of other work, such as the role of a
    member who just paid. The mark is a hint with an expiry: a lost task or an unreachable
    cache costs an extra drain at most, and the one-minute schedule drains regardless.
    """
    try:
        queued = Conf.SYNC or cache.add(DRAIN_QUEUED_KEY, True, timeout=DRAIN_QUEUED_SECONDS)
    except Exception:  # noqa: BLE001 - the cache is a hint; the delivery is already stored
        log.warning("drain_queue_mark_unavailable", exc_info=True)
        queued = True
    if queued:
        async_task("billing.tasks.drain_stripe_events")


def drain_waiting() -> bool:
    """Whether a drain task waits in the queue (one the mark of ``drain_request`` stands for)."""
    try:
        return cache.get(DRAIN_QUEUED_KEY) is not None
    except Exception:  # noqa: BLE001 - the mark is a hint
        return False


def drain_started() -> None:
    """A drain has left the queue: the next delivery may queue another."""
    try:
        cache.delete(DRAIN_QUEUED_KEY)
    except Exception:  # noqa: BLE001 - the mark expires on its own
        log.warning("drain_queue_mark_unavailable", exc_info=True)


@csrf_exempt
@require_POST
@transaction.non_atomic_requests
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    header = request.headers.get("Stripe-Signature")
    if not header:
        return _bad_request("missing Stripe-Signature header")
    payload = request.body.decode("utf-8", errors="replace")
    try:
        stripe.WebhookSignature.verify_header(
            payload, header, settings.STRIPE_WEBHOOK_SECRET, SIGNATURE_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError:
        log.warning("stripe_webhook_rejected", reason="bad_signature")
        return _bad_request("invalid signature")
    try:
        event = json.loads(payload)
    except ValueError:
        return _bad_request("malformed JSON")
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        return _bad_request("not a Stripe event")

    ignored = bool(event.get("livemode")) != settings.STRIPE_LIVE_MODE
    status = StripeEventInbox.Status.IGNORED if ignored else StripeEventInbox.Status.PENDING
    row_id = inbox_insert(event=event, body=payload, status=status)
    if row_id is None:
        log.info("stripe_event_duplicate", event_id=event["id"], type=event["type"])
        return JsonResponse({"received": True, "duplicate": True})
    if ignored:
        log.warning(
            "stripe_event_livemode_mismatch_ignored",
            event_id=event["id"],
            type=event["type"],
            event_livemode=bool(event.get("livemode")),
            configured_livemode=settings.STRIPE_LIVE_MODE,
        )
    else:
        # No log line of its own on the hot path: django-structlog's ``request_finished``
        # line carries these, one line per delivery instead of two.
        structlog.contextvars.bind_contextvars(
            stripe_event_id=event["id"], stripe_event_type=event["type"]
        )
        _wake_worker()
    return JsonResponse({"received": True})
