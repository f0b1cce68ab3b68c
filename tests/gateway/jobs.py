"""Task functions the gateway tests enqueue through django-q2 (by import path)."""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings

log = structlog.get_logger(__name__)

# What the last ``remember_context`` run saw bound (same process only).
SEEN: list[dict[str, Any]] = []


def remember_context() -> str:
    context = structlog.contextvars.get_contextvars()
    SEEN.append(dict(context))
    log.info("test_task_ran")
    return str(context.get("request_id", ""))


def charge_lapsed_member(email: str) -> None:
    """Fails like a real task would, with a secret and an email in its locals and message."""
    webhook_secret = settings.STRIPE_WEBHOOK_SECRET
    bot_token = settings.DISCORD_BOT_TOKEN
    raise RuntimeError(f"charge failed for {email} (secret {webhook_secret}, token {bot_token})")
