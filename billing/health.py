"""Billing's readiness check: Stripe events waiting for the worker.

Registered from ``BillingConfig.ready()`` into the registry of ``ops.health``.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count, Min

from billing.models import StripeEventInbox
from ops.health import CheckResult, age_seconds, register

# Inbox rows still waiting for the worker (pending, failed but retrying, or mid-flight).
WEBHOOK_BACKLOG_STATUSES = ("pending", "retrying", "processing")


@register("webhook_backlog", critical=True)
def webhook_backlog() -> CheckResult:
    """Age of the oldest verified Stripe event the worker has not applied yet."""
    max_age = settings.HEALTH_WEBHOOK_BACKLOG_MAX_AGE_SECONDS
    backlog = StripeEventInbox.objects.filter(status__in=WEBHOOK_BACKLOG_STATUSES).aggregate(
        oldest=Min("received_at"), pending=Count("id")
    )
    failed = StripeEventInbox.objects.filter(status="failed").count()
    detail: dict[str, object] = {
        "pending": backlog["pending"],
        "failed": failed,
        "max_age_seconds": max_age,
    }
    if backlog["oldest"] is None:
        return CheckResult(ok=True, detail=detail)
    age = age_seconds(backlog["oldest"])
    detail["oldest_age_seconds"] = age
    if age > max_age:
        detail["error"] = f"oldest unprocessed Stripe event is {age} s old"
    return CheckResult(ok=age <= max_age, detail=detail)
