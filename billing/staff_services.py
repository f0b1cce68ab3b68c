"""Staff actions on members, as services the admin (and anything else) calls.

Each action is one transaction that validates, writes database state that ``expected_role``
honours (so reconciliation never undoes staff intent), records an audit row
with the staff member and the mandatory reason, and asks for a role sync on commit. Discord is
converged by the one sync task; nothing here calls Discord directly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.complimentary import ComplimentaryError, complimentary_end, complimentary_grant
from billing.models import ComplimentaryMembership
from members.models import ManagedRole, Member, Override
from members.sync import discord_unlink_request, role_sync_request
from ops.errors import ServiceError
from ops.models import AuditAction
from ops.services import audit_actor, audit_record

MIN_REASON_LENGTH = 10


class StaffActionError(ServiceError):
    """A staff action was refused; the message is safe to show in the admin."""


def _clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON_LENGTH:
        raise StaffActionError(
            f"A reason of at least {MIN_REASON_LENGTH} characters is required: it goes into "
            "the audit log."
        )
    return reason


def _locked(member: Member, *, linked: bool = False) -> Member:
    """The member's row, locked for the action; ``linked`` refuses one without Discord."""
    member = Member.objects.select_for_update(of=("self",)).select_related("user").get(pk=member.pk)
    if linked and not member.discord_id:
        raise StaffActionError(f"{member} has no Discord account linked.")
    return member


def _audit(*, member: Member, actor: Any, action: str, reason: str, details: dict) -> None:
    audit_record(
        **audit_actor(actor),
        action=action,
        target=member,
        details=details,
        reason=reason,
    )


def _override_set(
    *,
    member: Member,
    actor: Any,
    action: AuditAction,
    reason: str,
    override: str,
    forced_role: str = "",
    details: dict | None = None,
) -> Member:
    """Set (or clear) the member's override, audit it with what it replaced, sync roles."""
    previous = {"override": member.override, "forced_role": member.forced_role}
    member.override = override
    member.forced_role = forced_role
    member.override_reason = reason if override else ""
    member.save(update_fields=["override", "forced_role", "override_reason", "updated_at"])
    _audit(
        member=member,
        actor=actor,
        action=action,
        reason=reason,
        details={**(details or {}), "previous": previous},
    )
    role_sync_request(member_id=member.pk)
    return member


@transaction.atomic
def member_access_revoke(*, member: Member, actor: Any, reason: str) -> Member:
    """Take every managed role away, whatever billing says, until staff restore access.

    The subscription is untouched and the member is not kicked (v1 semantics): they keep
    paying and stay in the guild without access.
    """
    reason = _clean_reason(reason)
    return _override_set(
        member=_locked(member),
        actor=actor,
        action=AuditAction.MEMBER_ACCESS_REVOKED,
        reason=reason,
        override=Override.REVOKED,
    )


@transaction.atomic
def member_access_restore(*, member: Member, actor: Any, reason: str) -> Member:
    """Clear any override: the member's role follows billing and the introduction again."""
    reason = _clean_reason(reason)
    member = _locked(member)
    if not member.override:
        raise StaffActionError(f"{member} has no override to clear.")
    return _override_set(
        member=member,
        actor=actor,
        action=AuditAction.MEMBER_ACCESS_RESTORED,
        reason=reason,
        override=Override.NONE,
    )


@transaction.atomic
def member_role_force(*, member: Member, role: str, actor: Any, reason: str) -> Member:
    """Pin one managed role regardless of billing and introduction, until restored."""
    reason = _clean_reason(reason)
    if role not in ManagedRole.values:
        raise StaffActionError(f"Unknown role {role!r}; choose one of {', '.join(ManagedRole)}.")
    return _override_set(
        member=_locked(member),
        actor=actor,
        action=AuditAction.MEMBER_ROLE_FORCED,
        reason=reason,
        override=Override.FORCED,
        forced_role=role,
        details={"role": role},
    )


@transaction.atomic
def member_claim_reset(*, member: Member, actor: Any, reason: str) -> Member:
    """Unlink the member's Discord account so they must claim again.

    The managed roles are removed from the old Discord account after commit (the unlink task
    strips them); subscription, seat and introduction state are kept, as in v1.
    """
    reason = _clean_reason(reason)
    member = _locked(member, linked=True)
    old = {"discord_id": member.discord_id, "discord_username": member.discord_username}
    member.discord_id = None
    member.discord_username = ""
    member.discord_avatar = ""
    member.linked_at = None
    member.in_guild = False
    member.discord_roles = []
    member.role_sync_status = ""
    member.role_sync_error = ""
    member.save(
        update_fields=[
            *Member.DISCORD_LINK_FIELDS,
            "in_guild",
            "discord_roles",
            "role_sync_status",
            "role_sync_error",
            "updated_at",
        ]
    )
    _audit(
        member=member,
        actor=actor,
        action=AuditAction.MEMBER_CLAIM_RESET,
        reason=reason,
        details=old,
    )
    discord_unlink_request(discord_id=old["discord_id"], reason=f"claim reset by staff: {reason}")
    return member


@transaction.atomic
def member_resync(*, member: Member, actor: Any, reason: str) -> Member:
    """Converge Discord to ``expected_role`` now (e.g. after fixing the bot's permissions)."""
    reason = _clean_reason(reason)
    member = _locked(member, linked=True)
    _audit(
        member=member,
        actor=actor,
        action=AuditAction.MEMBER_RESYNC_REQUESTED,
        reason=reason,
        details={"requested_at": timezone.now().isoformat()},
    )
    role_sync_request(member_id=member.pk)
    return member


@transaction.atomic
def member_complimentary_grant(
    *, member: Member, actor: Any, reason: str, ends_at: datetime | None = None
) -> Member:
    """Entitle the member without a subscription until ``ends_at`` or staff end it.

    They get the role the usual rules give (Squire until introduced); a forced role is not
    needed and would not grant access by itself.
    """
    reason = _clean_reason(reason)
    member = _locked(member)
    try:
        membership = complimentary_grant(
            member=member,
            reason=reason,
            ends_at=ends_at,
            granted_by=actor.email or str(actor),
            now=timezone.now(),
        )
    except ComplimentaryError as exc:
        raise StaffActionError(str(exc)) from exc
    _audit(
        member=member,
        actor=actor,
        action=AuditAction.COMPLIMENTARY_GRANTED,
        reason=reason,
        details={
            "membership_id": membership.pk,
            "ends_at": ends_at.isoformat() if ends_at else None,
        },
    )
    return member


@transaction.atomic
def member_complimentary_end(*, member: Member, actor: Any, reason: str) -> Member:
    """End the member's complimentary membership now, through the normal ending path."""
    reason = _clean_reason(reason)
    member = _locked(member)
    membership = ComplimentaryMembership.objects.filter(
        member=member, ended_at__isnull=True
    ).first()
    if membership is None:
        raise StaffActionError(f"{member} has no complimentary membership.")
    _audit(
        member=member,
        actor=actor,
        action=AuditAction.COMPLIMENTARY_ENDED,
        reason=reason,
        details={"membership_id": membership.pk},
    )
    complimentary_end(membership_id=membership.pk, reason="complimentary_ended", now=timezone.now())
    return member
