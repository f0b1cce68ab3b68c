"""``manage.py setup_schedules``: create or update the worker's schedules (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ops.schedules import sync_schedules


class Command(BaseCommand):
    help = (
        "Create or update the django-q2 schedules (heartbeat, billing tick, reconciliation, "
        "pruning) by name. Safe to run on every deploy; also runs after migrate."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for name, outcome in sync_schedules().items():
            self.stdout.write(f"{outcome:>9}  {name}")
