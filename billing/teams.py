"""Team seats: invites, atomic seat claims, seat revocation and the end of a team.

A seat claim locks the team row, so concurrent claims of the last seats queue behind each
other and never exceed the paid count (PostgreSQL row lock; SQLite serialises writers with
``BEGIN IMMEDIATE``). Claims need the team to be entitled and not in Debtor — v1 accepted
claims on cancelled teams.

Ending a team (its subscription stopped entitling it, or the Debtor period ran out) detaches
every member: team and seat cleared, Discord link kept, so each person can buy an individual
plan, start a company or claim another team's seat. Who held which seat stays in the audit log.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from billing.checkout import member_has_live_subscription
from billing.entitlement import member_is_entitled, subscription_is_entitled
from members.models import (
    DiscordUser,
    Invite,
    Member,
    SeatTier,
    Team,
    User,
    normalize_email,
    validate_member_email,
)
from members.sync import member_farewell_and_remove, role_sync_request
from ops.errors import ServiceError
from ops.models import AuditAction, AuditActor
from ops.services import audit_actor, audit_record, notification_enqueue

INVITE_TIERS = (SeatTier.OWNER, SeatTier.TEAM)


class SeatError(ServiceError):
    """A team action is refused; the message is safe to show to the user."""


class NotFound(SeatError):
    """The object does not exist for this actor (other teams' objects look the same)."""


@dataclass(frozen=True)
class TierSeats:
    tier: str
    label: str
    paid: int
    used: int

    @property
    def available(self) -> int:
        return max(0, self.paid - self.used)


INVITE_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def seats_used(team: Team, tier: str) -> int:
    return Member.objects.filter(team=team, seat_tier=tier).count()


def team_seats(team: Team) -> list[TierSeats]:
    return [
        TierSeats(
            tier=tier,
            label=SeatTier(tier).label,
            paid=team.paid_seats(tier),
            used=seats_used(team, tier),
        )
        for tier in INVITE_TIERS
    ]


def invite_link(invite: Invite) -> str:
    return settings.APP_URL + reverse("discordsync:invite", args=[invite.token])


def owned_team(member: Member | None) -> Team:
    """The team this member may manage; owners only (the IDOR guard for every team page)."""
    if member is None or member.team_id is None or member.seat_tier != SeatTier.OWNER:
        raise NotFound("Only owners of a team can manage its seats.")
    return member.team


def _invite_email_allowance_check(team: Team) -> None:
    """Owners may email invites to any address: at most TEAM_INVITE_EMAILS_PER_DAY per team in
    any 24 hours. Counted from the invites themselves while the caller holds the team's row
    lock, so parallel requests queue behind each other instead of all passing the count."""
    limit = settings.TEAM_INVITE_EMAILS_PER_DAY
    since = timezone.now() - timedelta(hours=24)
    sent = Invite.objects.filter(team=team, created_at__gte=since).exclude(email="").count()
    if sent >= limit:
        raise SeatError(
            f"This team has sent {sent} invite emails in the last 24 hours, the most allowed. "
            "Create an invite without an email and share its link, or try again tomorrow."
        )


@transaction.atomic
def invite_create(*, actor: Member, tier: str, email: str = "") -> Invite:
    team = owned_team(actor)
    if tier not in INVITE_TIERS:
        raise SeatError("Choose an owner seat or a team seat.")
    email = normalize_email(email) or ""
    if email:
        try:
            validate_member_email(email)
        except ValidationError as exc:
            raise SeatError(
                "Enter a valid email address for the invite, or leave it empty."
            ) from exc
    team = Team.objects.select_for_update().get(pk=team.pk)
    # The same rule as claiming: an invite nobody could use must not be made, nor emailed.
    if team.cancelled_at is not None or not subscription_is_entitled(
        team.subscription_id or "", timezone.now()
    ):
        raise SeatError(
            "This team's membership is not active right now, so invites cannot be created. "
            "Check the team's billing first."
        )
    used, paid = seats_used(team, tier), team.paid_seats(tier)
    if used >= paid:
        raise SeatError(
            f"All {SeatTier(tier).label.lower()}s are taken ({used} of {paid}). "
            "Add seats before inviting."
        )
    if email:
        _invite_email_allowance_check(team)
    invite = Invite.objects.create(
        team=team, tier=tier, email=email, token=secrets.token_urlsafe(32), created_by=actor
    )
    audit_record(
        **audit_actor(actor, AuditActor.MEMBER),
        action=AuditAction.INVITE_CREATED,
        target=invite,
        details={"team_id": team.pk, "tier": tier, "email": email},
    )
    if email:
        notification_enqueue(
            kind="seat_invite",
            channel="email",
            recipient=email,
            episode=f"invite:{invite.pk}",
            context={
                "link": invite_link(invite),
                "team_name": team.name,
                "seat_tier": SeatTier(tier).label.lower(),
                "inviter_name": actor.discord_username or str(actor),
            },
        )
    return invite


@transaction.atomic
def invite_revoke(*, actor: Member, invite_id: int, now: datetime) -> Invite:
    team = owned_team(actor)
    invite = Invite.objects.select_for_update().filter(pk=invite_id, team=team).first()
    if invite is None:
        raise NotFound("That invite does not exist.")
    if invite.revoked_at is None:
        invite.revoked_at = now
        invite.save(update_fields=["revoked_at"])
        audit_record(
            **audit_actor(actor, AuditActor.MEMBER),
            action=AuditAction.INVITE_REVOKED,
            target=invite,
        )
    return invite


def invite_for_token(token: str) -> Invite | None:
    """A usable invite (not revoked) by its token; None for unknown or revoked tokens.

    Tokens are ``secrets.token_urlsafe`` output; anything else is refused before the query
    (PostgreSQL rejects NUL bytes in text with an error, not a miss).
    """
    if not INVITE_TOKEN.fullmatch(token or ""):
        return None
    return (
        Invite.objects.select_related("team")
        .filter(token=token, revoked_at__isnull=True, team__cancelled_at__isnull=True)
        .first()
    )


@transaction.atomic
def seat_claim(*, invite_id: int, discord_user: DiscordUser, now: datetime) -> Member:
    """Give the Discord user a seat of the invite's tier, or refuse with a SeatError.

    The team row is locked for the whole check-and-create, which is what keeps concurrent
    claims within the paid seat count.
    """
    invite = Invite.objects.filter(pk=invite_id).first()
    if invite is None:
        raise SeatError("This invite link is not valid.")
    team = Team.objects.select_for_update().get(pk=invite.team_id)
    invite = Invite.objects.select_for_update().get(pk=invite_id)
    if invite.revoked_at is not None or team.cancelled_at is not None:
        raise SeatError("This invite link is no longer valid. Ask the team owner for a new one.")
    if not subscription_is_entitled(team.subscription_id or "", now):
        raise SeatError(
            "This team's membership is not active right now, so seats cannot be claimed. "
            "Ask the team owner to check their billing."
        )
    used, paid = seats_used(team, invite.tier), team.paid_seats(invite.tier)
    if used >= paid:
        raise SeatError("All seats of this kind are taken. Ask the team owner to add seats.")

    member = (
        Member.objects.select_for_update(of=("self",))
        .select_related("team", "user")
        .filter(discord_id=discord_user.id)
        .first()
    )
    if member is not None:
        if member.team_id == team.pk:
            raise SeatError("Your Discord account already holds a seat in this team.")
        if member.team_id is not None:
            raise SeatError("Your Discord account already holds a seat in another team.")
        # A cancelled individual plan is history, not a membership: only one that still grants
        # or owes access keeps the person from taking a seat.
        if member_is_entitled(member, now) or member_has_live_subscription(member):
            raise SeatError(
                "Your Discord account already has its own membership. Cancel it before "
                "taking a team seat, or contact support."
            )
        member.introduced_at = None  # a new seat starts with a fresh introduction
        member.intro_message_id = ""
    else:
        email = invite.email or None
        if email and User.objects.filter(email__iexact=email).exists():
            email = None  # that address belongs to another account; the seat stays Discord-only
        try:
            with transaction.atomic():
                user = User.objects.create_user(email=email, password=None)
        except IntegrityError as exc:
            raise SeatError("This seat could not be claimed. Please try again.") from exc
        member = Member(user=user, discord_id=discord_user.id, linked_at=now)
    member.team = team
    member.seat_tier = invite.tier
    member.discord_username = discord_user.username[:100]
    member.discord_avatar = discord_user.avatar[:100]
    member.linked_at = member.linked_at or now
    member.cancelled_at = None
    member.paid_at = now  # a claim starts a new access period (claim reminders, farewell)
    member.save()

    invite.last_claimed_at = now
    invite.last_claimed_by = member
    invite.save(update_fields=["last_claimed_at", "last_claimed_by"])
    audit_record(
        **audit_actor(member, AuditActor.MEMBER, label=discord_user.username),
        action=AuditAction.SEAT_CLAIMED,
        target=member,
        details={
            "team_id": team.pk,
            "tier": invite.tier,
            "invite_id": invite.pk,
            "discord_id": discord_user.id,
            "seats_used": used + 1,
            "seats_paid": paid,
        },
    )
    role_sync_request(member_id=member.pk)
    return member


@transaction.atomic
def seat_revoke(*, actor: Member, member_id: int, now: datetime) -> Member:
    """Take a seat back: farewell DM, roles removed and kick after commit, seat freed at once."""
    team = owned_team(actor)
    Team.objects.select_for_update().get(pk=team.pk)
    target = (
        Member.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(pk=member_id, team=team)
        .first()
    )
    if target is None:
        raise NotFound("That member is not in your team.")
    if target.pk == actor.pk:
        raise SeatError("You cannot revoke your own seat.")
    if team.primary_owner_id == target.pk:
        raise SeatError("The primary owner's seat cannot be revoked by other team members.")

    tier = target.seat_tier
    member_detach(member=target, now=now)
    audit_record(
        **audit_actor(actor, AuditActor.MEMBER),
        action=AuditAction.SEAT_REVOKED,
        target=target,
        details={"team_id": team.pk, "tier": tier, "discord_id": target.discord_id or ""},
    )
    member_farewell_and_remove(
        member=target,
        reason="Team seat revoked by an owner",
        kind="seat_revoked",
        episode=f"team:{team.pk}:{now.isoformat()}",
        context={"team_name": team.name, "name": target.discord_username},
    )
    return target


def member_detach(*, member: Member, now: datetime) -> None:
    """Take the member off their team: team and seat cleared, intro to redo, Discord kept.

    The person stays one Member (same login, same Discord link), free to buy an individual
    plan, start a company or claim a seat again; the caller audits why. Someone a
    complimentary membership still entitles keeps their access (not ended, intro kept): it
    ends through the complimentary membership's own ending.
    """
    member.team = None
    member.seat_tier = SeatTier.INDIVIDUAL
    if not member_is_entitled(member, now):
        member.introduced_at = None
        member.intro_message_id = ""
        member.cancelled_at = member.cancelled_at or now
    member.save(
        update_fields=[
            "team",
            "seat_tier",
            "introduced_at",
            "intro_message_id",
            "cancelled_at",
            "updated_at",
        ]
    )


@transaction.atomic
def team_end(*, team_id: int, now: datetime, reason: str, actor_type: str = "stripe") -> list[int]:
    """The team's subscription no longer entitles it: cancel it, revoke its invites, detach all.

    Idempotent: a team that already ended keeps its ``cancelled_at`` and has nobody left to
    detach. The callers send the farewell or removal messages and request the kicks (they hold
    the members from before the detachment). Returns the ids of the detached members.
    """
    team = Team.objects.select_for_update().get(pk=team_id)
    if team.cancelled_at is None:
        team.cancelled_at = now
        team.save(update_fields=["cancelled_at"])
    # Open invites die with the team; a team that returns creates new ones.
    Invite.objects.filter(team=team, revoked_at__isnull=True).update(revoked_at=now)
    members = list(Member.objects.select_for_update(of=("self",)).filter(team=team).order_by("pk"))
    for member in members:
        tier = member.seat_tier
        member_detach(member=member, now=now)
        audit_record(
            actor_type=actor_type,
            action=AuditAction.TEAM_MEMBER_DETACHED,
            target=member,
            details={"team_id": team.pk, "tier": tier, "discord_id": member.discord_id or ""},
            reason=reason,
        )
    return [member.pk for member in members]


@transaction.atomic
def team_return(*, team_id: int, now: datetime) -> Member | None:
    """An ended team's subscription entitles it again: the team is live, its primary owner back.

    The primary owner paid for the plan, so they get their owner seat again when they are
    free (no other team, no membership of their own that still grants or owes access); the
    other seats are claimed afresh through new invites. Returns the re-attached owner.
    """
    team = Team.objects.select_for_update().get(pk=team_id)
    if team.cancelled_at is not None:
        team.cancelled_at = None
        team.save(update_fields=["cancelled_at"])
    owner = (
        Member.objects.select_for_update(of=("self",))
        .select_related("user", "team")
        .filter(pk=team.primary_owner_id)
        .first()
    )
    if owner is None or owner.team_id is not None or member_has_live_subscription(owner):
        return None
    owner.team = team
    owner.seat_tier = SeatTier.OWNER
    owner.save(update_fields=["team", "seat_tier", "updated_at"])
    audit_record(
        actor_type=AuditActor.STRIPE,
        action=AuditAction.TEAM_OWNER_REATTACHED,
        target=owner,
        details={"team_id": team.pk, "subscription_id": team.subscription_id or ""},
    )
    return owner


def _seat_name(member: Member) -> str:
    return member.discord_username or member.user.email or f"member #{member.pk}"


@transaction.atomic
def seats_release_excess(*, team_id: int, now: datetime) -> list[int]:
    """Stripe's paid seats of a tier fell below the claimed ones: release the excess at once.

    The most recently claimed seats beyond the paid count go (``paid_at`` is when a seat was
    claimed, or bought for the purchaser); the primary owner is never released. Each released
    member is detached, told by DM and email and removed from the guild after commit; every
    owner left gets one email naming them. Returns the released members' ids.
    """
    team = Team.objects.select_for_update().get(pk=team_id)
    released: list[Member] = []
    for tier in INVITE_TIERS:
        holders = list(
            Member.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(team=team, seat_tier=tier)
            .order_by(F("paid_at").desc(nulls_last=True), "-pk")
        )
        excess = len(holders) - team.paid_seats(tier)
        if excess <= 0:
            continue
        candidates = [m for m in holders if m.pk != team.primary_owner_id][:excess]
        for member in candidates:
            _seat_release(member=member, team=team, tier=tier, seats=(len(holders), now))
        released += candidates
    if not released:
        return []
    released.sort(key=lambda m: (m.paid_at or now, m.pk))
    names = ", ".join(_seat_name(m) for m in released)
    owners = Member.objects.select_related("user").filter(team=team, seat_tier=SeatTier.OWNER)
    for owner in owners.order_by("pk"):
        notification_enqueue(
            kind="seats_released_owner",
            channel="email",
            recipient=owner.user.email or "",
            episode=f"team:{team.pk}:seats_released:{now.isoformat()}",
            member=owner,
            context={
                "team_name": team.name,
                "released_names": names,
                "released_count": len(released),
            },
        )
    return [m.pk for m in released]


def _seat_release(*, member: Member, team: Team, tier: str, seats: tuple[int, datetime]) -> None:
    claimed, now = seats
    # One message per seat held: the claim (paid_at) names the occasion.
    episode = f"team:{team.pk}:released:{(member.paid_at or now).isoformat()}"
    context = {"team_name": team.name, "member_name": _seat_name(member)}
    notification_enqueue(
        kind="seat_released",
        channel="email",
        recipient=member.user.email or "",
        episode=episode,
        member=member,
        context=context,
    )
    member_detach(member=member, now=now)
    audit_record(
        actor_type=AuditActor.STRIPE,
        action=AuditAction.SEAT_RELEASED,
        target=member,
        details={
            "team_id": team.pk,
            "tier": tier,
            "seats_paid": team.paid_seats(tier),
            "seats_claimed": claimed,
            "discord_id": member.discord_id or "",
        },
        reason="the company reduced its paid seats below the claimed ones",
    )
    member_farewell_and_remove(
        member=member,
        reason="Team seats reduced below the claimed ones",
        kind="seat_released",
        episode=episode,
        context=context,
    )
