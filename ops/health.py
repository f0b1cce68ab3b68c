"""Liveness and readiness: the check registry, the core checks and the two views.

``/health`` and ``/health/live`` answer without touching anything. ``/health/ready`` runs every
registered check and answers 503 when a critical one fails. Everyone gets the status code and
``{"status": "ok" | "fail"}``; the JSON body per check (which parts exist, their errors and
ages) only goes to staff and to requests from the host itself (loopback: the drills, the
deploy's smoke test, ``curl`` on the server).
Apps register their own checks in ``AppConfig.ready()``::

    from ops.health import register

    @register("worker", critical=True)
    def worker_heartbeat() -> CheckResult: ...
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from ops.models import Heartbeat, ReconciliationRun

log = structlog.get_logger(__name__)


@dataclass
class CheckResult:
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Check:
    name: str
    func: Callable[[], CheckResult]
    critical: bool


CHECKS: dict[str, Check] = {}


def register(
    name: str, *, critical: bool = True
) -> Callable[[Callable[[], CheckResult]], Callable[[], CheckResult]]:
    def decorator(func: Callable[[], CheckResult]) -> Callable[[], CheckResult]:
        CHECKS[name] = Check(name=name, func=func, critical=critical)
        return func

    return decorator


def run_checks() -> tuple[bool, dict[str, dict[str, Any]]]:
    healthy = True
    results: dict[str, dict[str, Any]] = {}
    database_ok = True
    for check in CHECKS.values():
        started = time.monotonic()
        if check.name != "database" and not database_ok:
            # Every other check reads the database; say so instead of timing out again.
            result = CheckResult(ok=False, detail={"error": "database unavailable"})
        else:
            try:
                result = check.func()
            except Exception as exc:  # a failing check is a result, not a crash
                result = CheckResult(ok=False, detail={"error": type(exc).__name__})
                log.warning("health_check_failed", check=check.name, error=str(exc))
        if check.name == "database":
            database_ok = result.ok
        results[check.name] = {
            "ok": result.ok,
            "critical": check.critical,
            "ms": round((time.monotonic() - started) * 1000, 1),
            **result.detail,
        }
        if check.critical and not result.ok:
            healthy = False
    return healthy, results


@register("database")
def database() -> CheckResult:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return CheckResult(ok=True)


@register("cache")
def cache_roundtrip() -> CheckResult:
    cache.set("health:probe", "ok", 10)
    return CheckResult(ok=cache.get("health:probe") == "ok")


def age_seconds(moment: datetime) -> int:
    return max(0, int((timezone.now() - moment).total_seconds()))


def _heartbeat(name: str, max_age: int) -> tuple[CheckResult, Heartbeat | None]:
    beat = Heartbeat.objects.filter(name=name).first()
    if beat is None:
        return CheckResult(ok=False, detail={"error": f"no {name} heartbeat yet"}), None
    age = age_seconds(beat.beat_at)
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
    age = age_seconds(run.finished_at)
    detail = {"age_seconds": age, "max_age_seconds": max_age, "last_status": run.status}
    if age > max_age:
        detail["error"] = f"last reconciliation finished {timedelta(seconds=age)} ago"
    return CheckResult(ok=age <= max_age, detail=detail)


@never_cache
def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def may_see_details(request: HttpRequest) -> bool:
    """Staff, or a request from this host (``REMOTE_ADDR`` is the real client address)."""
    try:
        if ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback:
            return True
    except ValueError:
        pass
    try:
        return bool(request.user.is_staff)
    except DatabaseError:
        return False  # the session cannot be read while the database is down


@never_cache
def ready(request: HttpRequest) -> JsonResponse:
    healthy, results = run_checks()
    failing = [name for name, r in results.items() if r["critical"] and not r["ok"]]
    warnings = [name for name, r in results.items() if not r["critical"] and not r["ok"]]
    if failing:
        log.warning("readiness_failed", failing=failing)
    body: dict[str, Any] = {"status": "ok" if healthy else "fail"}
    if may_see_details(request):
        body.update(failing=failing, warnings=warnings, checks=results)
    return JsonResponse(body, status=200 if healthy else 503)
