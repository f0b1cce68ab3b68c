"""The billing-failure timeline after the first failed renewal: grace, Debtor, removal.

A ``FailureEpisode`` (opened by ``billing.services.payment_failed_recorded``) is the clock.
Webhook hooks call :func:`episode_opened`, :func:`episode_recovered` and
:func:`member_access_end`; everything time-driven runs from :func:`billing_tick`, every five
minutes. Two moments: ``now`` is when the work happens and stamps every change, ``due_by``
(default ``now``) decides what is due. ``billing_tick --at T`` passes ``due_by=T`` with the
real ``now``, so it performs now what is due by T and the role policy, which reads the real
clock, agrees with the messages sent. Tests move ``now`` itself into the past.

Exactly once, across concurrent ticks, restarts and downtime:

* transitions are claimed with a conditional UPDATE on the episode row (``debtor_at IS NULL``
  → set; ``closed_at IS NULL`` → closed), so only the claiming transaction sends the
  transition's messages and requests the Discord work;
* reminders go through the outbox, whose key is unique per (channel, recipient, kind,
  ``"<episode>:<kind>:<step>"``), so a second tick inserting the same reminder is a no-op;
* after downtime only the latest due step of the Debtor cadence is sent (a member past day 10
  and day 15 hears "15", not both): the earlier ones are stale news.

Who hears what: every linked member gets the DMs (team members
read the "ask your plan administrator" wording, because ``team_name`` is set); the people who
pay — individual members and team owners — also get the emails, because an owner who never
linked Discord has no other channel. Team-seat members get a short notice instead of the
billing detail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import stripe
import structlog
from django.conf import settings
from django.db import transaction
from djstripe.models import Subscription

from billing.models import FailureEpisode
from billing.roles import member_expected_role
from billing.teams import team_end
from billing.truth import episode_paid_invoice, subscription_read
from members.models import Invite, Member, SeatTier
from members.sync import member_farewell_and_remove, role_sync_request
from ops.models import AuditAction, AuditActor, GatewayConfig
from ops.services import audit_record, notification_enqueue

log = structlog.get_logger(__name__)

DM = "dm"
EMAIL = "email"
# How far a tick's ``now`` may run ahead of this process's clock (another host's clock).
CLOCK_SKEW = timedelta(minutes=1)


class LifecycleError(Exception):
    """A lifecycle step could not be applied now (the message says why); retried next tick."""


class EpisodeSettled(Exception):  # noqa: N818 — an outcome, not an error
    """Stripe says the episode's renewal (or a later one) is paid: this tick's work is undone."""

    def __init__(self, subscription_id: str, subscription: dict[str, Any]) -> None:
        super().__init__(subscription_id)
        self.subscription_id = subscription_id
        self.subscription = subscription


def parse_steps(raw: str, *, what: str) -> list[int]:
    """``"7,10,15"`` → ``[7, 10, 15]``; a malformed admin value is a clear error, not a crash
    deep inside a reminder loop."""
    steps: list[int] = []
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise LifecycleError(f"{what}: {part!r} is not a whole number (got {raw!r})") from None
        if value < 0:
            raise LifecycleError(f"{what}: {value} is negative (got {raw!r})")
        steps.append(value)
    return sorted(set(steps))


# --- who an episode concerns ------------------------------------------------------------------


def episode_members(episode: FailureEpisode) -> list[Member]:
    """The whole team (company plan) or the one individual member the episode bills."""
    members = Member.objects.select_related("user", "team")
    if episode.team_id is not None:
        return list(members.filter(team_id=episode.team_id).order_by("pk"))
    if episode.member_id is not None:
        return list(members.filter(pk=episode.member_id))
    return list(
        members.filter(subscription_id=episode.subscription_id, team__isnull=True).order_by("pk")
    )


def pays(member: Member) -> bool:
    """Individual members and team owners get the billing detail; team seats a short notice."""
    return member.team_id is None or member.seat_tier == SeatTier.OWNER


def _name(member: Member) -> str:
    return member.discord_username or (member.user.email or "").split("@")[0]


def _send(
    member: Member,
    *,
    kind: str,
    episode: str,
    channels: tuple[str, ...],
    context: dict[str, Any] | None = None,
) -> int:
    """Queue ``kind`` to the member on each channel they can be reached on (once per key).

    Returns how many messages are new (0 when an earlier tick already queued them).
    """
    context = {"member_name": _name(member), **(context or {})}
    queued = 0
    for channel in channels:
        recipient = member.discord_id if channel == DM else member.user.email
        if recipient:
            queued += (
                notification_enqueue(
                    kind=kind,
                    channel=channel,
                    recipient=recipient,
                    episode=episode,
                    member=member,
                    context=context,
                )
                is not None
            )
    return queued


def _send_to_all(
    members: list[Member],
    *,
    kind: str,
    episode: str,
    context: dict[str, Any] | None = None,
    email_payers: bool = True,
) -> int:
    queued = 0
    for member in members:
        channels = (DM, EMAIL) if email_payers and pays(member) else (DM,)
        queued += _send(member, kind=kind, episode=episode, channels=channels, context=context)
    return queued


# --- webhook hooks ----------------------------------------------------------------------------


def episode_opened(*, episode: FailureEpisode, now: datetime) -> None:
    """The first failed renewal: everyone hears at once, within the caller's transaction."""
    members = episode_members(episode)
    grace_hours = round((episode.grace_ends_at - episode.opened_at).total_seconds() / 3600)
    context = {"grace_ends_at": episode.grace_ends_at, "grace_hours": grace_hours}
    key = f"{episode.pk}:payment_failed"
    for member in members:
        if pays(member):
            _send(member, kind="payment_failed", episode=key, channels=(DM, EMAIL), context=context)
        else:
            _send(
                member, kind="payment_failed_member", episode=key, channels=(DM,), context=context
            )
    log.info("failure_episode_opened", episode_id=episode.pk, members=len(members))


def episode_recovered(*, episode: FailureEpisode, now: datetime) -> None:
    """Payment succeeded on an open episode (the caller closed it and requested role sync).

    The role named in the message is ``expected_role`` now that the episode is closed, so a
    Squire who fell into Debtor is told "Squire", never promoted on the way back (bug 12).
    """
    was_debtor = episode.debtor_at is not None and episode.debtor_at <= now
    kind = "recovered_debtor" if was_debtor else "recovered_grace"
    key = f"{episode.pk}:recovered"
    for member in episode_members(episode):
        if not pays(member):
            _send(member, kind="recovered_member", episode=key, channels=(DM,))
            continue
        context: dict[str, Any] = {}
        if was_debtor:
            role = member_expected_role(member, now)
            context["role_name"] = settings.ROLE_NAMES.get(role or "", "")
        _send(member, kind=kind, episode=key, channels=(DM, EMAIL), context=context)
    audit_record(
        actor_type=AuditActor.STRIPE,
        action=AuditAction.FAILURE_EPISODE_RECOVERED,
        target=episode,
        details={"subscription_id": episode.subscription_id, "from": kind.split("_")[1]},
    )


def member_access_end(*, member: Member, subscription_id: str, reason: str, now: datetime) -> None:
    """The subscription stopped entitling the member: cancelled, intro to redo, farewell, kick.

    Database first; the farewell DM is delivered before the kick (Discord refuses DMs to a
    user who shares no guild with the bot), and neither blocks the state change.
    """
    member.cancelled_at = now
    member.introduced_at = None
    member.intro_message_id = ""
    member.save(update_fields=["cancelled_at", "introduced_at", "intro_message_id", "updated_at"])
    audit_record(
        actor_type=AuditActor.STRIPE,
        action=AuditAction.SUBSCRIPTION_ENDED,
        target=member,
        details={"subscription_id": subscription_id, "status": reason},
    )
    # One farewell per access period: a subscription that comes back (an unpaid one is
    # settled) and ends again says goodbye again; a replayed ending does not.
    period = member.paid_at.isoformat() if member.paid_at else ""
    member_farewell_and_remove(
        member=member,
        reason="Subscription ended",
        kind="farewell",
        episode=f"{subscription_id}:{period}",
        context={"member_name": _name(member)},
    )


# --- time-driven transitions ------------------------------------------------------------------


def _debtor_audit(
    episode: FailureEpisode, members: list[Member], *, action: str, reason: str, **details: Any
) -> None:
    """The system's audit row of a Debtor step: the episode's subscription and members, then
    what the step adds."""
    audit_record(
        actor_type=AuditActor.SYSTEM,
        action=action,
        target=episode,
        details={
            "subscription_id": episode.subscription_id,
            "members": [m.pk for m in members],
            **details,
        },
        reason=reason,
    )


@transaction.atomic
def episode_enter_debtor(*, episode_id: int, now: datetime, due_by: datetime | None = None) -> bool:
    """Grace is over (by ``due_by``): the member (or the whole team) enters Debtor at ``now``,
    and the Debtor period runs from then. False if not due or done.

    The database moves whether or not the member is still in the guild (bug 13); the role
    sync task converges Discord when it can, and the bot's join handler when they come back.
    """
    config = GatewayConfig.load()
    removal_due_at = now + timedelta(days=config.debtor_days)
    claimed = FailureEpisode.objects.filter(
        pk=episode_id,
        closed_at__isnull=True,
        debtor_at__isnull=True,
        grace_ends_at__lte=due_by or now,
    ).update(debtor_at=now, removal_due_at=removal_due_at)
    if not claimed:
        return False
    episode = FailureEpisode.objects.get(pk=episode_id)
    members = episode_members(episode)
    _debtor_audit(
        episode,
        members,
        action=AuditAction.DEBTOR_ENTERED,
        reason="grace period expired without payment",
        removal_due_at=removal_due_at.isoformat(),
    )
    _send_to_all(
        members,
        kind="debtor_entered",
        episode=f"{episode.pk}:debtor_entered",
        context={"removal_at": removal_due_at, "days_left": config.debtor_days},
    )
    for member in members:
        role_sync_request(member_id=member.pk)
    return True


def cancel_in_stripe(subscription_id: str) -> str:
    """Cancel the subscription in Stripe and mirror the answer; returns its status.

    stripe-python applies the timeout and bounded retries (``billing/stripe_client.py``).
    A subscription that is already cancelled is fine: that is the state we want.
    """
    try:
        remote = stripe.Subscription.cancel(subscription_id)
    except stripe.InvalidRequestError as exc:
        remote = stripe.Subscription.retrieve(subscription_id)
        if remote.get("status") != "canceled":
            raise LifecycleError(f"Stripe refused to cancel {subscription_id}: {exc}") from exc
    except stripe.StripeError as exc:
        raise LifecycleError(f"Stripe unavailable cancelling {subscription_id}: {exc}") from exc
    Subscription.sync_from_stripe_data(remote, api_key=settings.STRIPE_SECRET_KEY)
    return str(remote.get("status") or "")


@transaction.atomic
def episode_remove(*, episode_id: int, now: datetime, due_by: datetime | None = None) -> bool:
    """The Debtor period ran out: removal message, subscription cancelled, members removed.

    The claim (closing the episode) and the Stripe cancellation share one transaction: if
    Stripe cannot be reached the claim rolls back and the next tick tries again.
    """
    claimed = FailureEpisode.objects.filter(
        pk=episode_id, closed_at__isnull=True, removal_due_at__lte=due_by or now
    ).update(closed_at=now, close_reason=FailureEpisode.CloseReason.REMOVED)
    if not claimed:
        return False
    episode = FailureEpisode.objects.get(pk=episode_id)
    config = GatewayConfig.load()
    stripe_status = ""
    if config.cancel_stripe_on_removal:
        stripe_status = cancel_in_stripe(episode.subscription_id)
    members = episode_members(episode)
    for member in members:
        Member.objects.filter(pk=member.pk).update(
            cancelled_at=now, introduced_at=None, intro_message_id="", updated_at=now
        )
    revoked_invites = 0
    if episode.team_id is not None:
        revoked_invites = Invite.objects.filter(
            team_id=episode.team_id, revoked_at__isnull=True
        ).count()
        # The team is cancelled, its invites revoked and every member detached.
        team_end(
            team_id=episode.team_id,
            now=now,
            reason="billing unresolved for the whole Debtor period",
            actor_type=AuditActor.SYSTEM,
        )
    _debtor_audit(
        episode,
        members,
        action=AuditAction.DEBTOR_REMOVED,
        reason="billing unresolved for the whole Debtor period",
        stripe_cancelled=config.cancel_stripe_on_removal,
        stripe_status=stripe_status,
        invites_revoked=revoked_invites,
    )
    key = f"{episode.pk}:removal"
    for member in members:
        if pays(member):
            _send(member, kind="removal", episode=key, channels=(EMAIL,))
        member_farewell_and_remove(
            member=member,
            reason="Billing failure: Debtor period ended",
            kind="removal",
            episode=key,
            context={"member_name": _name(member)},
        )
    return True


def removal_settle(*, subscription_id: str, status: str, now: datetime) -> int:
    """Stripe shows a subscription paid again after its members were removed for not paying
    it (``cancel_stripe_on_removal`` off): the removal no longer holds them out.

    The caller passes the status it just re-read from Stripe; returns how many removals were
    settled (0 when there was none, or it was settled before).
    """
    episodes = list(
        FailureEpisode.objects.select_for_update().filter(
            subscription_id=subscription_id,
            close_reason=FailureEpisode.CloseReason.REMOVED,
            settled_at__isnull=True,
        )
    )
    for episode in episodes:
        episode.settled_at = now
        episode.save(update_fields=["settled_at"])
        audit_record(
            actor_type=AuditActor.STRIPE,
            action=AuditAction.REMOVAL_SETTLED,
            target=episode,
            details={"subscription_id": subscription_id, "status": status},
            reason="the subscription was paid after the removal",
        )
    return len(episodes)


# --- time-driven reminders --------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One reminder of the Debtor cadence: its outbox kind, key suffix, due time and context."""

    kind: str
    name: str
    due_at: datetime
    context: dict[str, Any] = field(default_factory=dict)


def debtor_cadence(episode: FailureEpisode, config: GatewayConfig) -> list[Step]:
    """Day reminders after entering Debtor, then final warnings before removal, in time order.

    Steps that would fall outside the Debtor period (an admin shortened it) are dropped.
    """
    if episode.debtor_at is None or episode.removal_due_at is None:
        return []
    start, end = episode.debtor_at, episode.removal_due_at
    steps: list[Step] = []
    for days in parse_steps(config.debtor_reminder_days, what="debtor_reminder_days"):
        due = start + timedelta(days=days)
        if start < due < end:
            days_left = max(1, round((end - due) / timedelta(days=1)))
            steps.append(
                Step("debtor_reminder", f"debtor_reminder:{days}", due, {"days_left": days_left})
            )
    for hours in parse_steps(config.final_warning_hours, what="final_warning_hours"):
        due = end - timedelta(hours=hours)
        if start < due < end:
            steps.append(
                Step("final_warning", f"final_warning:{hours}", due, {"hours_left": hours})
            )
    return sorted(steps, key=lambda step: step.due_at)


@dataclass(frozen=True)
class Reminder:
    """The reminder an episode is due for: outbox kind, key suffix, context, channels."""

    kind: str
    name: str
    context: dict[str, Any]
    email_payers: bool = True


def reminder_due(
    episode: FailureEpisode, config: GatewayConfig, *, now: datetime, due_by: datetime
) -> Reminder | None:
    """The latest reminder of the episode's current phase due by ``due_by``, or None.

    Grace: the warning at ``grace_reminder_hours`` (skipped once grace is over: the Debtor
    message says more). Debtor: the latest due step of :func:`debtor_cadence` only, so after
    downtime the member hears the current news once instead of a burst of stale reminders.
    """
    if episode.debtor_at is None:
        warn_at = episode.opened_at + timedelta(hours=config.grace_reminder_hours)
        if not (warn_at <= due_by < episode.grace_ends_at):
            return None
        hours_left = max(1, round((episode.grace_ends_at - now) / timedelta(hours=1)))
        return Reminder(
            "grace_warning",
            "grace_warning",
            {"grace_ends_at": episode.grace_ends_at, "hours_left": hours_left},
            email_payers=False,  # the first warning at 24 h is a DM only
        )
    due = [step for step in debtor_cadence(episode, config) if step.due_at <= due_by]
    if not due or (episode.removal_due_at is not None and due_by >= episode.removal_due_at):
        return None
    step = due[-1]
    return Reminder(step.kind, step.name, {"removal_at": episode.removal_due_at, **step.context})


@transaction.atomic
def episode_remind(*, episode_id: int, now: datetime, due_by: datetime | None = None) -> str:
    """Queue the reminder the episode is due for (:func:`reminder_due`); returns its name, or
    "" when none is due or an earlier tick already queued it."""
    episode = FailureEpisode.objects.filter(pk=episode_id, closed_at__isnull=True).first()
    if episode is None:
        return ""
    reminder = reminder_due(episode, GatewayConfig.load(), now=now, due_by=due_by or now)
    if reminder is None:
        return ""
    queued = _send_to_all(
        episode_members(episode),
        kind=reminder.kind,
        episode=f"{episode.pk}:{reminder.name}",
        context=reminder.context,
        email_payers=reminder.email_payers,
    )
    return reminder.name if queued else ""


# --- the tick ---------------------------------------------------------------------------------


def _stop_if_paid(episode_id: int) -> None:
    """Ask Stripe before a member hears of Debtor or removal: the renewal may have been paid
    and its webhook lost (the member must never be punished for our missed event)."""
    episode = FailureEpisode.objects.get(pk=episode_id)
    subscription = subscription_read(episode.subscription_id)
    if episode_paid_invoice(episode=episode, subscription=subscription) is not None:
        raise EpisodeSettled(episode.subscription_id, subscription)


@transaction.atomic
def episode_advance(
    *, episode_id: int, now: datetime, due_by: datetime | None = None
) -> tuple[bool, bool, str]:
    """One episode's work due by ``due_by``: (entered Debtor, removed, reminder sent).

    One step per run: an episode that enters Debtor now does nothing else in this run, since
    its Debtor period (reminders, removal) starts now.

    Whenever the work would reach the member or Stripe (a Debtor transition, a new reminder,
    the removal), Stripe's current state is read first or before committing; if the renewal
    is paid, :class:`EpisodeSettled` rolls the whole step back — messages, role requests and
    all — and the caller settles the episode as recovered instead.
    """
    due_by = due_by or now
    if episode_enter_debtor(episode_id=episode_id, now=now, due_by=due_by):
        _stop_if_paid(episode_id)
        return True, False, ""
    removal_due = FailureEpisode.objects.filter(
        pk=episode_id, closed_at__isnull=True, removal_due_at__lte=due_by
    ).exists()
    if removal_due:
        _stop_if_paid(episode_id)
        if episode_remove(episode_id=episode_id, now=now, due_by=due_by):
            return False, True, ""
    reminder = episode_remind(episode_id=episode_id, now=now, due_by=due_by)
    if reminder:
        _stop_if_paid(episode_id)
    return False, False, reminder
