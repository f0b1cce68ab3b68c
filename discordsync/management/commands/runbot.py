"""``manage.py runbot``: the one Discord gateway connection (introductions, joins, leaves,
self-check and heartbeat). See ``discordsync.bot.runner`` for the life cycle."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand

from discordsync.bot.runner import BotRunner


class Command(BaseCommand):
    help = (
        "Run the Discord bot. Only one runs at a time (database lease 'bot'); a second one "
        "waits and takes over when the first stops. SIGTERM/SIGINT stop it gracefully."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=10.0,
            help="seconds to let in-flight event handlers finish on SIGTERM (default 10)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        runner = BotRunner(shutdown_timeout=options["shutdown_timeout"])
        code = asyncio.run(runner.run())
        if code == 0:
            return
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        # A handler that did not finish may still hold a worker thread (a blocked database
        # call); a normal exit would wait for it, so leave at once with the failure code.
        os._exit(code)
