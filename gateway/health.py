"""Liveness and readiness.

``/health`` and ``/health/live`` answer without touching anything. ``/health/ready`` runs every
registered check and answers 503 when a critical one fails. Everyone gets the status code and
``{"status": "ok" | "fail"}``; the JSON body per check (which parts exist, their errors and
ages) only goes to staff and to requests from the host itself (loopback: the drills, the
deploy's smoke test, ``curl`` on the server).
Apps register their own checks in ``AppConfig.ready()``::

    from gateway.health import register

    @register("worker", critical=True)
    def worker_heartbeat() -> CheckResult: ...
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

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
