"""``manage.py reconcile``: compare Stripe, the database and Discord, and report (or fix) drift.

Exit codes: 0 clean, 1 drift found, 2 failure (including a refused start while another run
holds the lease, and SIGTERM, which stops after the page in hand and marks the run failed).
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import structlog
from django.core.management.base import BaseCommand, CommandParser

from gateway import reconciliation
from ops.models import GatewayConfig, ReconciliationRun

log = structlog.get_logger(__name__)

EXIT_CLEAN, EXIT_DRIFT, EXIT_FAILURE = 0, 1, 2


class Command(BaseCommand):
    help = (
        "Reconcile Stripe, the database and Discord. Report-only unless --fix; --dry-run "
        "changes nothing (no fix, no stored run, no report). Exit 0 clean, 1 drift, 2 failure. "
        "Runs even while scheduled reconciliation is paused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fix", action="store_true", help="repair the drift found")
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would be done; change nothing"
        )
        parser.add_argument("--json", action="store_true", help="print the run as JSON")
        parser.add_argument("--member", type=int, metavar="ID", help="only this member")

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.stopping = True
        log.warning("reconcile_stop_requested")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            code = self._run(options)
        finally:
            signal.signal(signal.SIGTERM, previous)
        sys.exit(code)

    def _run(self, options: dict[str, Any]) -> int:
        progress = _ProgressBar(self.stderr) if self.stderr.isatty() else None
        if GatewayConfig.load().reconcile_paused and not options["json"]:
            self.stderr.write("note: scheduled reconciliation is paused; this manual run goes on")
        try:
            run = reconciliation.reconcile(
                fix=options["fix"],
                dry_run=options["dry_run"],
                member_id=options["member"],
                trigger="command",
                progress=progress,
                stop=lambda: self.stopping,
            )
        except reconciliation.ReconciliationError as exc:
            if progress is not None:
                progress.done()
            self.stderr.write(f"reconciliation failed: {exc}")
            if options["json"]:
                self.stdout.write(json.dumps({"status": "failed", "error": str(exc)}))
            return EXIT_FAILURE
        if progress is not None:
            progress.done()
        if options["json"]:
            self.stdout.write(json.dumps(_as_json(run, dry_run=options["dry_run"]), default=str))
        else:
            self.stdout.write(_as_text(run, dry_run=options["dry_run"]))
        return EXIT_DRIFT if run.status == ReconciliationRun.Status.DRIFT else EXIT_CLEAN


class _ProgressBar:
    """One self-overwriting stderr line per phase, only when a person is watching."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.phase = ""

    def __call__(self, phase: str, done: int) -> None:
        if phase != self.phase and self.phase:
            self.stream.write("", ending="\n")
        self.phase = phase
        self.stream.write(f"\r{phase:<8} {done:>9,}", ending="")
        self.stream.flush()

    def done(self) -> None:
        if self.phase:
            self.stream.write("", ending="\n")


def _as_json(run: ReconciliationRun, *, dry_run: bool) -> dict[str, Any]:
    return {
        "id": run.pk,
        "status": run.status,
        "dry_run": dry_run,
        "fix": run.fix,
        "counts": run.counts,
        "findings": run.findings,
        "fixes": run.fixes,
        "error": run.error,
    }


def _as_text(run: ReconciliationRun, *, dry_run: bool) -> str:
    counts = run.counts
    title = "Reconciliation (dry run)" if dry_run else f"Reconciliation run {run.pk}"
    lines = [
        f"{title}: {run.status}",
        f"  subscriptions {counts.get('subscriptions', 0)}, members {counts.get('members', 0)}, "
        f"guild members {counts.get('guild_members', 0)}",
        f"  API calls {counts.get('api_calls', 0)} (Stripe reads "
        f"{counts.get('api_stripe_reads', 0)}, Discord reads {counts.get('api_discord_reads', 0)}"
        f", Discord writes {counts.get('api_discord_writes', 0)})",
    ]
    if not run.findings:
        lines.append("  no drift")
    for finding in run.findings:
        subject = finding.get("member_id") or finding.get("discord_id") or ""
        subject = subject or finding.get("team_id") or finding.get("subscription_id") or ""
        lines.append(f"  {finding['kind']:<40} {subject!s:<20} {finding.get('detail', '')}")
    if run.fixes:
        lines.append("Would fix:" if dry_run else "Fixes:")
        for fix in run.fixes:
            state = "planned" if dry_run else ("ok" if fix.get("ok") else "FAILED")
            subject = fix.get("member_id") or fix.get("discord_id") or fix.get("subscription_id")
            error = f" ({fix['error']})" if fix.get("error") else ""
            lines.append(f"  {fix['action']:<24} {subject!s:<20} {state}{error}")
    return "\n".join(lines)
