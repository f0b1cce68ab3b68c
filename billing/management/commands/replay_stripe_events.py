"""Re-apply stored Stripe events through the same task the worker runs."""

from __future__ import annotations

import signal
from datetime import datetime, time
from typing import Any

import structlog
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from billing.drain import mode_mismatch_reason, process_stripe_event
from billing.models import StripeEventInbox

log = structlog.get_logger(__name__)


def _parse_since(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since {value!r} is not a date (YYYY-MM-DD) or datetime")
        moment = datetime.combine(day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    return moment


class Command(BaseCommand):
    help = (
        "Reprocess stored Stripe events through the worker's task (handlers decide from "
        "Stripe's current state, so a replay is safe). Select with --id, --failed and/or "
        "--since. Events stored as from the other Stripe mode (live vs test) are never applied."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--id", dest="event_ids", action="append", default=[], metavar="EVT")
        parser.add_argument(
            "--failed", action="store_true", help="only events that failed (retrying or given up)"
        )
        parser.add_argument("--since", metavar="DATE", help="received on or after this date")

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.stopping = True

    def handle(self, *args: Any, **options: Any) -> None:
        # SIGTERM finishes the event in hand, then stops: no event is left half-applied.
        self.stopping = False
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if not (options["event_ids"] or options["failed"] or options["since"]):
            raise CommandError("choose what to replay: --id EVT, --failed and/or --since DATE")
        rows = StripeEventInbox.objects.all()
        if options["event_ids"]:
            rows = rows.filter(event_id__in=options["event_ids"])
            missing = set(options["event_ids"]) - set(rows.values_list("event_id", flat=True))
            if missing:
                raise CommandError(f"not stored: {', '.join(sorted(missing))}")
            ignored = sorted(
                rows.filter(status=StripeEventInbox.Status.IGNORED).values_list(
                    "event_id", flat=True
                )
            )
            if ignored:
                raise CommandError(
                    f"refused {', '.join(ignored)}: {mode_mismatch_reason()}; nothing replayed"
                )
        rows = rows.exclude(status=StripeEventInbox.Status.IGNORED)
        if options["failed"]:
            rows = rows.filter(
                status__in=[StripeEventInbox.Status.RETRYING, StripeEventInbox.Status.FAILED]
            )
        if options["since"]:
            rows = rows.filter(received_at__gte=_parse_since(options["since"]))

        failures = 0
        for pk, event_id, event_type in rows.order_by("received_at", "id").values_list(
            "pk", "event_id", "type"
        ):
            if self.stopping:
                self.stderr.write("stopped by SIGTERM")
                break
            outcome = process_stripe_event(pk, force=True)
            failures += outcome not in (StripeEventInbox.Status.PROCESSED, "skipped")
            log.info("stripe_event_replayed", event_id=event_id, type=event_type, outcome=outcome)
            self.stdout.write(f"{event_id} {event_type}: {outcome}")
        if failures:
            raise CommandError(f"{failures} event(s) failed again; see the admin for errors")
