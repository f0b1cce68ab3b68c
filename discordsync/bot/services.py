"""Writes the bot performs for gateway events: guild joins and leaves, and its heartbeat.

Unknown Discord users are ignored: the guild has people who are not members of the gateway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from django.db import transaction

from discordsync.services import guild_absence_record
from members.models import Member
from members.sync import role_sync_request
from ops.models import AuditAction, AuditActor, Heartbeat
from ops.services import audit_record

log = structlog.get_logger(__name__)

HEARTBEAT_NAME = "bot"


def _guild_event(discord_id: str, action: AuditAction, reason: str) -> Member | None:
    """Lock the linked member a guild event is about and audit the event; None if unknown."""
    member = Member.objects.select_for_update().filter(discord_id=discord_id).first()
    if member is not None:
        audit_record(
            actor_type=AuditActor.DISCORD,
            actor_id=discord_id,
            actor_label=member.discord_username,
            action=action,
            target=member,
            reason=reason,
        )
    return member


@transaction.atomic
def member_guild_join(*, discord_id: str, now: datetime) -> bool:
    """A linked member joined (or rejoined) the guild: record it and re-apply their role."""
    member = _guild_event(
        discord_id, AuditAction.MEMBER_GUILD_JOINED, "member joined the Discord guild"
    )
    if member is None:
        return False
    member.in_guild = True
    member.guild_joined_at = now
    member.save(update_fields=["in_guild", "guild_joined_at", "updated_at"])
    role_sync_request(member_id=member.pk)
    log.info("member_guild_joined", member_id=member.pk)
    return True


@transaction.atomic
def member_guild_leave(*, discord_id: str, now: datetime) -> bool:
    """A linked member left the guild. Billing is untouched: leaving is not cancelling; a
    member who is still entitled gets one email with a way back in."""
    member = _guild_event(
        discord_id, AuditAction.MEMBER_GUILD_LEFT, "member left the Discord guild"
    )
    if member is None:
        return False
    guild_absence_record(member_id=member.pk, now=now)
    log.info("member_guild_left", member_id=member.pk)
    return True


@transaction.atomic
def heartbeat_beat(*, now: datetime, details: dict[str, Any] | None = None) -> Heartbeat:
    """Record a sign of life, merging ``details`` into what is stored (the self-check stays)."""
    beat, created = Heartbeat.objects.select_for_update().get_or_create(
        name=HEARTBEAT_NAME, defaults={"beat_at": now, "details": details or {}}
    )
    if not created:
        beat.beat_at = now
        beat.details = {**(beat.details or {}), **(details or {})}
        beat.save(update_fields=["beat_at", "details"])
    return beat
