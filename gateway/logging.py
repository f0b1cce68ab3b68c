"""One logging set-up for the web, worker and bot processes (and gunicorn's own logs).

structlog renders every record, including those from the standard library (Django,
django-q2, gunicorn, discord.py), as JSON in production or as plain console lines in
development. Context variables bound by django-structlog (``request_id``, ``user_id``) or by
our task and bot wrappers (``gateway.tasks``) appear on every line, whoever logged it.
"""

from __future__ import annotations

import re
from datetime import date, time
from decimal import Decimal
from typing import Any
from uuid import UUID

import structlog

# A key containing one of these words never has its value logged.
SECRET_KEYS = (
    "token",
    "secret",
    "password",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "dsn",
    "signature",
    "sessionid",
)

# Secrets that show up inside free text (an exception message, a URL, a header dump).
SECRET_PATTERNS = [
    re.compile(r"whsec_[A-Za-z0-9]+"),
    re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]+"),
    # A Discord bot token: base64 user id, timestamp and HMAC separated by dots.
    re.compile(r"\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}"),
    re.compile(r"(?i)\b(bearer|bot|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(\b\w*(?:token|key|code|state|signature|secret|password)=)[^&#\s\"',]+"),
    re.compile(r"\bt=\d+,v1=[0-9a-f]+(?:,v0=[0-9a-f]+)?"),
    # Bearer tokens in paths: a seat invite and a password-reset link (request lines log them).
    re.compile(r"(/invite/)[^/\s\"'?#]+"),
    re.compile(r"(/password/reset/[^/\s\"'?#]+/)[^/\s\"'?#]+"),
]
REDACTED = "[redacted]"


def _known_secret_values() -> list[str]:
    """The configured secrets themselves, so an exact value is caught in any text."""
    # Imported here: gateway.settings imports this module while settings are being built.
    from django.conf import settings

    if not settings.configured:
        return []
    names = (
        "SECRET_KEY",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "DISCORD_BOT_TOKEN",
        "DISCORD_CLIENT_SECRET",
        "RESEND_API_KEY",
        "SENTRY_DSN",
    )
    values = (str(getattr(settings, name, "") or "") for name in names)
    # Short values would redact ordinary words; real secrets are long.
    return sorted({v for v in values if len(v) >= 8}, key=len, reverse=True)


def scrub_text(text: str) -> str:
    """Replace every known secret value and secret-looking token in ``text``."""
    for value in _known_secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: (m.group(1) or "") + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def is_secret_key(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return any(word in lowered for word in SECRET_KEYS)


def _scrub_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else _scrub_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub_value(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    # Anything else (a request, an exception) is rendered by its repr: scrub that text.
    return scrub_text(repr(value))


def redact_secrets(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Drop values of keys that look like secrets and scrub secrets out of every value."""
    for key, value in list(event.items()):
        if key.startswith("_") or key == "exc_info":
            continue  # structlog's own bookkeeping (the stdlib record, from_structlog)
        event[key] = REDACTED if is_secret_key(key) else _scrub_value(value)
    return event


SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def build_logging(log_format: str, level: str) -> dict[str, Any]:
    """Return Django's LOGGING dict and configure structlog to hand records to it.

    Gunicorn's ``logconfig_dict`` is built from the same function, so its access and error
    lines come out in the same format as the application's.
    """
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    # Tracebacks become one plain string before scrubbing: a JSON record stays one line, and
    # the console never shows the local variables (tokens, secrets) a rich traceback would.
    final = [structlog.processors.format_exc_info, redact_secrets, renderer]
    formatter = {
        "()": structlog.stdlib.ProcessorFormatter,
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *final,
        ],
        "foreign_pre_chain": SHARED_PROCESSORS,
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": formatter},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structured"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Replaces Django's default handlers (a plain console copy under DEBUG, and
            # mail_admins), which would print unscrubbed tracebacks beside ours.
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "WARNING"},
            "django_structlog": {"level": level},
            "django-q": {"level": level},
            "gunicorn.error": {"handlers": ["console"], "level": level, "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": level, "propagate": False},
            "discord": {"level": "WARNING"},
            "stripe": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }
