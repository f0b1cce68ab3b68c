"""The outbox's Discord channels: member DMs and the admin channel.

Registered with the outbox in ``DiscordSyncConfig.ready()``; the outbox itself only knows the
channel names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from discordsync.client import CANNOT_DM_USER, DiscordPermanentError, get_client
from ops.notifications import DeliveryError, RenderedMessage, Undeliverable, register_channel
from ops.templates_registry import ADMIN_CHANNEL, DM

# Discord rejects messages over 2000 characters.
DISCORD_MAX_LENGTH = 2000


def _discord_text(content: str) -> str:
    if len(content) <= DISCORD_MAX_LENGTH:
        return content
    return content[: DISCORD_MAX_LENGTH - 1] + "…"


def _deliver(send: Callable[[str, str], Any], recipient: str, content: str) -> None:
    try:
        send(recipient, _discord_text(content))
    except DiscordPermanentError as exc:
        reason = (
            "the member does not accept DMs" if exc.code == CANNOT_DM_USER else "Discord refused"
        )
        raise Undeliverable(f"{reason}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 — rate limits, 5xx, timeouts, open breaker
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


@register_channel(DM)
def send_dm(recipient: str, message: RenderedMessage) -> None:
    # The per-process client: rate-limit buckets and the circuit breaker are shared.
    _deliver(get_client().send_dm, recipient, message.text)


@register_channel(ADMIN_CHANNEL)
def send_admin_channel(recipient: str, message: RenderedMessage) -> None:
    content = f"**{message.subject}**\n{message.text}" if message.subject else message.text
    _deliver(get_client().post_channel_message, recipient, content)
