"""``manage.py billing_tick [--at ISO-DATETIME] [--dry-run]``: run the billing lifecycle once
and say what it did. The worker runs the same thing every five minutes; operators use this to
catch up by hand. ``--at T`` performs now what is due by T (it acts for real, stamping every
change with the real time, so roles and messages agree); ``--dry-run`` lists what would happen
and changes nothing."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from billing.lifecycle import LifecycleError
from billing.tick import billing_tick


def parse_moment(value: str) -> datetime:
    """An ISO date or datetime; naive values are read in UTC."""
    try:
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            moment = datetime(day.year, day.month, day.day) if day else None
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"--at {value!r} is not an ISO date or datetime (2026-03-01T12:00Z)")
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    return moment


class Command(BaseCommand):
    help = (
        "Apply due billing-failure transitions (grace → Debtor → removal), reminders and "
        "claim reminders once. SIGTERM finishes the current member, then exits."
        " With --at T it performs now what is due by T, stamped with the real time;"
        " --dry-run only lists what would happen."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--at",
            metavar="ISO-DATETIME",
            help=(
                "perform now what is due by this moment (naive values are UTC); every change "
                "is stamped with the real time, one step per episode per run"
            ),
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="list what would happen; no database write, no message, no Stripe call",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        due_by = parse_moment(options["at"]) if options.get("at") else now
        self.stopping = False
        previous = {
            sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            report = billing_tick(
                now=now,
                due_by=due_by,
                dry_run=options["dry_run"],
                should_stop=lambda: self.stopping,
            )
        except LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        for line in report.lines():
            self.stdout.write(line)
        if report.errors:
            raise CommandError(f"{len(report.errors)} item(s) failed; they are retried next tick")

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stderr.write("Stopping after the current item…")
        self.stopping = True
