"""Error monitoring for the web, worker and bot processes; off without ``SENTRY_DSN``.

Nothing personal or secret may leave the machine: ``send_default_pii`` is off, request bodies
are never attached, and every event, transaction and breadcrumb passes through
:func:`scrub_event`, which walks the whole payload, blanks values under secret-looking keys
and scrubs secrets and email addresses out of every string (exception messages, local
variables, headers, query strings, log messages).
"""

from __future__ import annotations

import re
import sys
from typing import Any

import sentry_sdk
import structlog
from django.conf import settings
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration

from gateway.logging import is_secret_key, scrub_text

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
HEADER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FILTERED = "[Filtered]"

_process: str | None = None


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        return EMAIL.sub(FILTERED, scrub_text(value))
    if isinstance(value, dict):
        return {
            key: FILTERED if isinstance(key, str) and is_secret_key(key) else scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        # Django's integration reports headers and cookies as [name, value] pairs.
        if (
            len(value) == 2
            and isinstance(value[0], str)
            and HEADER_NAME.match(value[0])
            and is_secret_key(value[0])
        ):
            return [value[0], FILTERED]
        return [scrub(item) for item in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """``before_send`` / ``before_send_transaction``: scrub, then tag the request id."""
    if _is_task_failure_echo(event):
        return None
    event = scrub(event)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        event.setdefault("tags", {})["request_id"] = str(request_id)
    return event


def _is_task_failure_echo(event: dict[str, Any]) -> bool:
    """django-q2's monitor logs every failed task at ERROR with the traceback as text; the
    worker already reported the exception itself (``TaskErrorReporter``), so drop the echo."""
    message = (event.get("logentry") or {}).get("message") or ""
    return event.get("logger") == "django-q" and str(message).startswith("Failed '")


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    return scrub(crumb)


class TaskErrorReporter:
    """django-q2's error-reporter interface: ``report()`` is called inside the ``except``
    block of a failing task, so the exception is still current."""

    def report(self) -> None:
        sentry_sdk.capture_exception()


def _install_task_reporter() -> None:
    # django-q2 finds reporters only through packaging entry points, which this project (not
    # an installed distribution) cannot declare; the worker module reads this global. Imported
    # here: django_q.worker imports models, so only once apps are loaded.
    import django_q.worker
    from django_q.conf import ErrorReporter

    django_q.worker.error_reporter = ErrorReporter([TaskErrorReporter()])


def init_sentry(process: str) -> bool:
    """Start the SDK once per process; return whether it is on."""
    global _process
    if _process is not None:
        return True
    dsn = settings.SENTRY_DSN
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=settings.DJANGO_ENV,
        release=settings.SENTRY_RELEASE,
        send_default_pii=False,
        max_request_body_size="never",
        traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE,
        integrations=[DjangoIntegration(), LoggingIntegration(event_level="ERROR")],
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
    )
    sentry_sdk.set_tag("process", process)
    _install_task_reporter()
    _process = process
    return True


def process_name(argv: list[str] | None = None) -> str:
    """Which of the three processes (or a one-off command) this interpreter is."""
    argv = sys.argv if argv is None else argv
    program = argv[0] if argv else ""  # a path: bin/gunicorn, or gunicorn/__main__.py
    command = argv[1] if len(argv) > 1 else ""
    if "gunicorn" in program or command == "runserver":
        return "web"
    if command == "qcluster":
        return "worker"
    if command == "runbot":
        return "bot"
    return "command"
