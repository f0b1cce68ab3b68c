"""Linking a Discord account, guild presence and absence.

Discord side effects are requested through ``members.sync`` and performed by
``discordsync.tasks`` after commit. Linking is the one place the web request talks to Discord
directly: the OAuth access token that lets us add the user to the guild (``guilds.join``)
lives only for this request and is never stored, so it cannot be handed to a task.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.entitlement import member_is_entitled
from billing.roles import member_belongs_in_guild, member_expected_role
from discordsync.client import DiscordError, get_client
from discordsync.selectors import managed_role_ids
from members.models import DiscordUser, Member
from members.sync import role_sync_request
from ops.errors import ServiceError
from ops.models import AuditAction, AuditActor
from ops.services import audit_actor, audit_record, notification_enqueue

log = structlog.get_logger(__name__)


class LinkError(ServiceError):
    """A Discord account cannot be linked; the message is safe to show."""


@transaction.atomic
def discord_link(*, member_id: int, discord_user: DiscordUser, now: datetime) -> Member:
    """Link a Discord account to a paying member (the claim flow).

    Refused when the member is not entitled, already linked to another Discord account, or
    the Discord account belongs to another member. The same account again (a linked member
    finding their way back into the guild) keeps the link as it is. Role sync is requested on
    commit.
    """
    member = (
        Member.objects.select_for_update(of=("self",))
        .select_related("team", "user")
        .get(pk=member_id)
    )
    if member.discord_id and member.discord_id != discord_user.id:
        raise LinkError(
            "Your membership is linked to another Discord account. Sign in to Discord with "
            "that account to rejoin the server."
        )
    if not member_is_entitled(member, now):
        raise LinkError("An active membership is needed before you can link Discord.")
    if member.discord_id:
        return member
    holder = (
        Member.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(discord_id=discord_user.id)
        .exclude(pk=member.pk)
        .first()
    )
    if holder is not None:
        if not discord_only_and_empty(holder):
            raise LinkError("That Discord account is already linked to another membership.")
        _merge_discord_only(holder=holder, into=member)
    member.discord_id = discord_user.id
    member.discord_username = discord_user.username[:100]
    member.discord_avatar = discord_user.avatar[:100]
    member.linked_at = now
    try:
        with transaction.atomic():
            member.save(update_fields=[*Member.DISCORD_LINK_FIELDS, "updated_at"])
    except IntegrityError as exc:  # the same Discord account linked concurrently
        raise LinkError("That Discord account is already linked to another membership.") from exc
    audit_record(
        **audit_actor(member, AuditActor.MEMBER),
        action=AuditAction.DISCORD_LINKED,
        target=member,
        details={"discord_id": discord_user.id, "discord_username": member.discord_username},
    )
    role_sync_request(member_id=member.pk)
    return member


def discord_only_and_empty(member: Member) -> bool:
    """A row made by a seat claim (no email, no password) that holds nothing any more.

    Its only use is logging in with Discord; the seat it was made for is gone (the team ended
    or the seat was revoked) and it never had a plan of its own.
    """
    user = member.user
    return (
        not user.email
        and not user.has_usable_password()
        and not user.is_staff
        and member.team_id is None
        and not member.subscription_id
    )


def _merge_discord_only(*, holder: Member, into: Member) -> None:
    """The person who held a Discord-only seat links the same Discord account to their paid
    membership: one person, one member. The empty row (and its login) goes; the audit log keeps
    its history under its id."""
    audit_record(
        **audit_actor(into, AuditActor.MEMBER),
        action=AuditAction.DISCORD_ONLY_MEMBER_MERGED,
        target=into,
        details={"merged_member_id": holder.pk, "discord_id": holder.discord_id or ""},
    )
    holder.user.delete()  # cascades to the Member row; notifications keep their copy


def guild_join(*, member_id: int, access_token: str) -> bool:
    """Add a freshly linked member to the guild with their expected role.

    Returns False when Discord refused or failed; the member can still join through the
    invite link, and the bot's join handler then applies the role.
    """
    member = Member.objects.select_related("team", "user").get(pk=member_id)
    now = timezone.now()
    expected = member_expected_role(member, now)
    role_id = managed_role_ids().get(expected or "")
    try:
        added = get_client().add_member(
            member.discord_id or "",
            access_token=access_token,
            roles=[role_id] if role_id else [],
            reason="Membership Gateway: member linked their Discord account",
        )
    except DiscordError as exc:
        log.warning("guild_join_failed", member_id=member_id, error=type(exc).__name__)
        return False
    with transaction.atomic():
        Member.objects.filter(pk=member_id).update(
            in_guild=True,
            guild_joined_at=now,
            guild_left_at=None,
            discord_roles=[expected] if (added and expected) else member.discord_roles,
            updated_at=now,
        )
        audit_record(
            actor_type=AuditActor.SYSTEM,
            action=AuditAction.DISCORD_GUILD_JOINED,
            target=member,
            details={"added": added, "role": expected or ""},
            reason="added with the guilds.join scope after linking",
        )
        # Already a member: Discord ignores the roles we sent, so converge them.
        role_sync_request(member_id=member_id)
    return True


@transaction.atomic
def guild_absence_record(*, member_id: int, now: datetime) -> bool:
    """A linked member is not in the guild: note since when, and if they belong there, email
    them a way back in (the claim page, which adds them again through ``guilds.join``).

    One email per absence: the outbox key is the moment the absence began, so a repeated leave
    event or a daily reconciliation that notices it again sends nothing more; rejoining ends
    the absence, and the next one sends again. True when an email was queued.
    """
    member = (
        Member.objects.select_for_update(of=("self",))
        .select_related("team", "user")
        .get(pk=member_id)
    )
    if not member.discord_id:
        return False
    if member.in_guild or member.guild_left_at is None:
        member.in_guild = False
        member.guild_left_at = now
        member.save(update_fields=["in_guild", "guild_left_at", "updated_at"])
    if not member_belongs_in_guild(member, now):
        return False
    absent_since = member.guild_left_at or now
    queued = notification_enqueue(
        kind="guild_rejoin",
        channel="email",
        recipient=member.user.email or "",
        episode=f"member:{member.pk}:absent:{absent_since.isoformat()}",
        member=member,
    )
    if queued is not None:
        log.info("guild_rejoin_email_queued", member_id=member.pk)
    return queued is not None


def guild_presence_record(*, member_ids: list[int], now: datetime) -> int:
    """Members seen in the guild whose row says they are not (a join no bot saw)."""
    return Member.objects.filter(pk__in=member_ids, in_guild=False).update(
        in_guild=True, guild_joined_at=now, updated_at=now
    )
