"""``manage.py discord_selfcheck``: can the bot manage roles in the configured guild?

REST only (no gateway connection, so it is safe while the bot runs). Exit codes: 0 all good,
1 problems found, 2 the check could not run (network, token).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import discord.http
import structlog
from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from discordsync.bot.client import point_at_configured_discord
from discordsync.bot.selfcheck import (
    GuildFacts,
    SelfCheckUnavailable,
    build_report,
    facts_from_rest,
)

log = structlog.get_logger(__name__)


async def _collect() -> GuildFacts:
    point_at_configured_discord()
    http = discord.http.HTTPClient(
        asyncio.get_running_loop(), max_ratelimit_timeout=settings.DISCORD_TIMEOUT_SECONDS
    )
    try:
        return await facts_from_rest(
            http, token=settings.DISCORD_BOT_TOKEN, timeout=settings.DISCORD_TIMEOUT_SECONDS
        )
    finally:
        await http.close()


class Command(BaseCommand):
    help = (
        "Check the bot's role hierarchy, permissions, privileged intents and configured "
        "channels over REST. Exit 0 ok, 1 problems found, 2 could not check."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            facts = asyncio.run(_collect())
        except SelfCheckUnavailable as exc:
            log.error("discord_selfcheck_unavailable", error=str(exc))
            self.stderr.write(f"Could not check: {exc}")
            sys.exit(2)
        report = build_report(facts, source="discord_selfcheck", now=timezone.now())
        log.info("discord_selfcheck_done", ok=report.ok, problems=[p.code for p in report.problems])
        if options["json"]:
            self.stdout.write(json.dumps(report.to_dict(), indent=2))
        elif report.ok:
            self.stdout.write(
                f"OK: guild {settings.DISCORD_GUILD_ID}: hierarchy, permissions, channels "
                "and intents are as required."
            )
        else:
            self.stdout.write(f"{len(report.problems)} problem(s):")
            for problem in report.problems:
                self.stdout.write(f"  - [{problem.code}] {problem.message}")
        if not report.ok:
            sys.exit(1)
