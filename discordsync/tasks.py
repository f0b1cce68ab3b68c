"""Tasks that converge Discord to the database. Both are idempotent and safe to retry.

Transient Discord failures raise, so django-q2 runs the task again (bounded by
``Q_CLUSTER["max_attempts"]``); permanent ones (missing permission, bad hierarchy) are recorded
on the member, alerted once, and not retried — repeating a 403 only burns the invalid-request
budget.
"""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from django.utils import timezone

from billing.roles import member_expected_role
from discordsync.client import DiscordPermanentError, DiscordTransientError, get_client
from discordsync.selectors import managed_role_ids
from discordsync.services import guild_absence_record
from members.models import Member, RoleSyncStatus
from ops.models import AuditAction, AuditActor
from ops.services import audit_record, notification_enqueue
from ops.tasks import deliver_notification

log = structlog.get_logger(__name__)


def alert_once(*, op: str, member: Member, error: Exception) -> None:
    """Tell the admin channel about a permanent failure, once per member, operation and hour.

    The outbox key makes it exactly-once; the hour in the episode lets a problem that comes
    back later alert again instead of staying silent forever.
    """
    hour = timezone.now().strftime("%Y%m%d%H")
    notification_enqueue(
        kind="bot_alert",
        channel="admin_channel",
        recipient=settings.DISCORD_ADMIN_CHANNEL_ID,
        episode=f"{op}:{member.pk}:{hour}",
        member=member,
        context={
            "summary": f"Discord {op} failed for member {member.pk}",
            "details": (
                f"{error} — member {member} (id {member.pk}, Discord {member.discord_id}). "
                "Not retried: check the bot's permissions and that its role sits above the "
                "managed roles, then re-run role sync."
            )[:1500],
        },
    )


def _record(member_id: int, **fields: Any) -> None:
    # update() rather than save(): other flows may be changing other fields concurrently.
    Member.objects.filter(pk=member_id).update(updated_at=timezone.now(), **fields)


def _held_roles(discord_member: dict[str, Any], role_ids: dict[str, str]) -> list[str]:
    held = {str(r) for r in discord_member.get("roles", [])}
    return [name for name, role_id in role_ids.items() if role_id in held]


def _write_role(member: Member, *, name: str, role_id: str, add: bool, reason: str) -> None:
    client = get_client()
    if add:
        client.add_role(member.discord_id, role_id, reason=reason)
    else:
        client.remove_role(member.discord_id, role_id, reason=reason)
    audit_record(
        actor_type=AuditActor.SYSTEM,
        actor_label="role sync",
        action=AuditAction.DISCORD_ROLE_ADDED if add else "discord_role_removed",
        target=member,
        details={"role": name, "role_id": role_id, "discord_id": member.discord_id},
        reason=reason,
    )


def sync_member_roles(member_id: int) -> str:
    """Make the member hold exactly ``expected_role`` among the managed roles.

    Reads the member from Discord first and writes only the difference: stale managed roles
    are removed before the expected one is added, so a member never holds two. Returns the
    resulting sync status (useful in the task result and in tests).
    """
    member = Member.objects.select_related("team", "user").filter(pk=member_id).first()
    if member is None:
        return "missing"
    now = timezone.now()
    if not member.discord_id:
        _record(
            member_id,
            role_sync_status=RoleSyncStatus.NOT_LINKED,
            role_sync_error="",
            roles_synced_at=now,
        )
        return RoleSyncStatus.NOT_LINKED

    expected = member_expected_role(member, now)
    role_ids = managed_role_ids()
    reason = f"Membership Gateway role sync: expected {expected or 'no managed role'}"
    op = "role_sync"
    try:
        discord_member = get_client().get_member(member.discord_id)
        if discord_member is None:
            _record(
                member_id,
                in_guild=False,
                discord_roles=[],
                role_sync_status=RoleSyncStatus.NOT_IN_GUILD,
                role_sync_error="",
                roles_synced_at=now,
            )
            log.info("role_sync_not_in_guild", member_id=member_id)
            return RoleSyncStatus.NOT_IN_GUILD

        held = _held_roles(discord_member, role_ids)
        for name in held:
            if name != expected:
                op = f"role_remove:{name}"
                _write_role(member, name=name, role_id=role_ids[name], add=False, reason=reason)
        if expected and expected not in held:
            if expected not in role_ids:
                missing = f"no Discord role id configured for {expected}"
                raise DiscordPermanentError(0, None, missing)
            op = f"role_add:{expected}"
            _write_role(member, name=expected, role_id=role_ids[expected], add=True, reason=reason)
    except DiscordPermanentError as exc:
        _record(member_id, role_sync_status=RoleSyncStatus.FAILED, role_sync_error=str(exc)[:500])
        alert_once(op=op, member=member, error=exc)
        log.warning("role_sync_permanent_failure", member_id=member_id, op=op, status=exc.status)
        return RoleSyncStatus.FAILED
    except DiscordTransientError as exc:
        _record(member_id, role_sync_status=RoleSyncStatus.FAILED, role_sync_error=str(exc)[:500])
        raise

    fields: dict[str, Any] = {
        "in_guild": True,
        "guild_left_at": None,
        "discord_roles": [expected] if expected else [],
        "role_sync_status": RoleSyncStatus.OK,
        "role_sync_error": "",
        "roles_synced_at": now,
    }
    if member.guild_joined_at is None:
        fields["guild_joined_at"] = now
    _record(member_id, **fields)
    return RoleSyncStatus.OK


def member_remove_from_guild(member_id: int, reason: str, farewell_id: int | None = None) -> str:
    """Remove the managed roles and kick (seat revoked, cancelled, Debtor period over).

    The caller queued the farewell in the outbox; it is delivered here first when still
    pending, because after the kick Discord refuses DMs to a user who shares no guild with the
    bot (the outbox's conditional claim keeps it exactly-once). A failing DM never blocks the
    removal. If the member is entitled to a role again by the time this runs (they
    re-subscribed), nothing is removed: the role sync runs instead, because the database, not
    the queued intent, is the truth.
    """
    member = Member.objects.select_related("team", "user").filter(pk=member_id).first()
    if member is None or not member.discord_id:
        return "not_linked"
    now = timezone.now()
    if member_expected_role(member, now) is not None:
        return sync_member_roles(member_id)
    if farewell_id is not None:
        try:
            deliver_notification(farewell_id)
        except Exception:  # never let a DM problem keep a revoked member in the guild
            log.exception("farewell_delivery_failed", member_id=member_id)
    client = get_client()
    role_ids = managed_role_ids()
    audit_reason = f"Membership Gateway: {reason}"
    op = "kick"
    try:
        discord_member = client.get_member(member.discord_id)
        if discord_member is not None:
            for name in _held_roles(discord_member, role_ids):
                op = f"role_remove:{name}"
                _write_role(
                    member, name=name, role_id=role_ids[name], add=False, reason=audit_reason
                )
            op = "kick"
            kicked = client.kick(member.discord_id, reason=audit_reason)
            if kicked:
                audit_record(
                    actor_type=AuditActor.SYSTEM,
                    action=AuditAction.DISCORD_MEMBER_KICKED,
                    target=member,
                    details={"discord_id": member.discord_id},
                    reason=reason,
                )
    except DiscordPermanentError as exc:
        _record(member_id, role_sync_status=RoleSyncStatus.FAILED, role_sync_error=str(exc)[:500])
        alert_once(op=op, member=member, error=exc)
        return RoleSyncStatus.FAILED
    except DiscordTransientError as exc:
        _record(member_id, role_sync_status=RoleSyncStatus.FAILED, role_sync_error=str(exc)[:500])
        raise
    _record(
        member_id,
        in_guild=False,
        guild_left_at=now,
        discord_roles=[],
        role_sync_status=RoleSyncStatus.NOT_IN_GUILD,
        role_sync_error="",
        roles_synced_at=now,
    )
    return RoleSyncStatus.NOT_IN_GUILD


def strip_unlinked_roles(discord_id: str, reason: str) -> str:
    """Remove every managed role from a Discord account no member is linked to (claim reset).

    No kick: the person stays in the guild without access, as after a v1 claim reset. If the
    account was linked again before this ran, the database wins and a normal sync runs instead.
    """
    relinked = Member.objects.filter(discord_id=discord_id).values_list("pk", flat=True).first()
    if relinked is not None:
        return sync_member_roles(relinked)
    client = get_client()
    role_ids = managed_role_ids()
    discord_member = client.get_member(discord_id)
    if discord_member is None:
        return RoleSyncStatus.NOT_IN_GUILD
    audit_reason = f"Membership Gateway: {reason}"
    removed: list[str] = []
    failed: list[str] = []
    for name in _held_roles(discord_member, role_ids):
        # Transient errors raise and the task is retried; permanent ones (a 403 repeats) are
        # recorded in the audit row below, which staff read on the member's page.
        try:
            client.remove_role(discord_id, role_ids[name], reason=audit_reason)
        except DiscordPermanentError as exc:
            log.warning("strip_unlinked_roles_failed", role=name, status=exc.status)
            failed.append(name)
            continue
        removed.append(name)
    audit_record(
        actor_type=AuditActor.SYSTEM,
        actor_label="role sync",
        action=AuditAction.DISCORD_ROLES_STRIPPED,
        details={"discord_id": discord_id, "removed": removed, "failed": failed},
        reason=reason,
    )
    return RoleSyncStatus.FAILED if failed else RoleSyncStatus.OK


def guild_absence_note(member_id: int) -> str:
    """``members.sync.guild_rejoin_request``: a linked member outside the guild who belongs
    there gets the way back in by email, once per absence (``guild_absence_record``)."""
    if not Member.objects.filter(pk=member_id).exists():
        return "no member"
    queued = guild_absence_record(member_id=member_id, now=timezone.now())
    return "rejoin email queued" if queued else "nothing to send"
