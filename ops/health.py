"""Readiness checks for the parts of the gateway that run outside the web process.

Registered from ``OpsConfig.ready()``; ``gateway.health`` runs them for ``/health/ready``.
Each check reads one small row or aggregate, so readiness stays cheap enough to poll.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from gateway.health import CheckResult, register
from ops.models import Heartbeat, ReconciliationRun

# Inbox rows still waiting for the worker (pending, failed but retrying, or mid-flight).
WEBHOOK_BACKLOG_STATUSES = ("pending", "retrying", "processing")


def _age_seconds(moment: datetime) -> int:
    return max(0, int((timezone.now() - moment).total_seconds()))


def _heartbeat(name: str, max_age: int) -> tuple[CheckResult, Heartbeat | None]:
    beat = Heartbeat.objects.filter(name=name).first()
    if beat is None:
        return CheckResult(ok=False, detail={"error": f"no {name} heartbeat yet"}), None
    age = _age_seconds(beat.beat_at)
    detail = {"age_seconds": age, "max_age_seconds": max_age}
    if age > max_age:
        detail["error"] = f"{name} heartbeat is {age} s old"
    return CheckResult(ok=age <= max_age, detail=detail), beat


@register("worker", critical=True)
def worker_heartbeat() -> CheckResult:
    """The worker writes this row every minute (``ops.tasks.worker_heartbeat``)."""
    result, _ = _heartbeat("worker", settings.HEALTH_WORKER_MAX_AGE_SECONDS)
    return result


@register("bot", critical=True)
def bot_heartbeat() -> CheckResult:
    """The bot process writes this row while its gateway connection is up."""
    result, beat = _heartbeat("bot", settings.HEALTH_BOT_MAX_AGE_SECONDS)
    if beat is not None and "selfcheck" in beat.details:
        result.detail["selfcheck"] = beat.details["selfcheck"]
    return result


@register("bot_selfcheck", critical=False)
def bot_selfcheck() -> CheckResult:
    """The bot's last self-check (role hierarchy, permissions, intents, channels).

    Not critical: a wrong role order breaks role changes, not the member pages; the
    operator sees it here and in the admin channel.
    """
    beat = Heartbeat.objects.filter(name="bot").first()
    selfcheck = (beat.details or {}).get("selfcheck") if beat is not None else None
    if not isinstance(selfcheck, dict):
        return CheckResult(ok=False, detail={"error": "no self-check reported yet"})
    return CheckResult(ok=bool(selfcheck.get("ok")), detail={"selfcheck": selfcheck})


@register("reconciliation", critical=False)
def last_reconciliation() -> CheckResult:
    max_age = settings.HEALTH_RECONCILIATION_MAX_AGE_HOURS * 3600
    run = (
        ReconciliationRun.objects.filter(
            finished_at__isnull=False,
            status__in=(ReconciliationRun.Status.CLEAN, ReconciliationRun.Status.DRIFT),
        )
        .order_by("-finished_at")
        .first()
    )
    if run is None:
        return CheckResult(ok=False, detail={"error": "no finished reconciliation yet"})
    age = _age_seconds(run.finished_at)
    detail = {"age_seconds": age, "max_age_seconds": max_age, "last_status": run.status}
    if age > max_age:
        detail["error"] = f"last reconciliation finished {timedelta(seconds=age)} ago"
    return CheckResult(ok=age <= max_age, detail=detail)


@register("webhook_backlog", critical=True)
def webhook_backlog() -> CheckResult:
    """Age of the oldest verified Stripe event the worker has not applied yet."""
    inbox = apps.get_model("billing", "StripeEventInbox")
    max_age = settings.HEALTH_WEBHOOK_BACKLOG_MAX_AGE_SECONDS
    backlog = inbox.objects.filter(status__in=WEBHOOK_BACKLOG_STATUSES).aggregate(
        oldest=Min("received_at"), pending=Count("id")
    )
    failed = inbox.objects.filter(status="failed").count()
    detail: dict[str, object] = {
        "pending": backlog["pending"],
        "failed": failed,
        "max_age_seconds": max_age,
    }
    if backlog["oldest"] is None:
        return CheckResult(ok=True, detail=detail)
    age = _age_seconds(backlog["oldest"])
    detail["oldest_age_seconds"] = age
    if age > max_age:
        detail["error"] = f"oldest unprocessed Stripe event is {age} s old"
    return CheckResult(ok=age <= max_age, detail=detail)
