"""Billing write services: what a Stripe change means for members, teams and failure episodes.

Every function converges local state to the subscription as Stripe reports it *now* (the
caller re-reads it with ``subscription_sync``), so events may arrive in any order, twice, or
be replayed. State changes write an audit row; Discord and messages follow after commit via
``role_sync_request`` and the notification outbox.

Checkout contract (``billing/checkout.py`` creates the sessions): the session's ``metadata``
(or the subscription's) carries ``plan_type`` (``individual`` | ``company``), ``member_id``
(the purchaser) and, for a company, ``team_id`` (the pending Team); ``client_reference_id``
names the member (individual) or the team (company) as a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import stripe
import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from djstripe.models import Customer, Subscription

from billing import lifecycle
from billing.catalogue import seat_counts
from billing.checkout import LIVE_STATUSES
from billing.entitlement import complimentary_active, member_facts, paid_up, subscription_facts
from billing.models import FailureEpisode
from billing.plan_change import replaced_subscription_end_request, replacement_for
from billing.selectors import subscription_period_end, trial_end
from billing.teams import seats_release_excess, team_end, team_return
from billing.truth import (
    ENDED_STATUSES,
    FAILING_STATUSES,
    episode_paid_invoice,
    invoice_is_failing,
    invoice_read,
    object_id,
    subscription_read,
)
from members.models import Member, SeatTier, Team
from members.sync import guild_rejoin_request, role_sync_request
from ops.models import AuditAction, AuditActor, GatewayConfig
from ops.services import audit_record, notification_enqueue

log = structlog.get_logger(__name__)

# Statuses in which Stripe holds nothing unpaid on the subscription: a removal after the Debtor
# period is settled by them (past_due would still be the unpaid subscription it removed).
PAID_STATUSES = frozenset({"active", "trialing"})
# Stripe announces a trial's end (``customer.subscription.trial_will_end``) three days before
# it; a little more, so the read that event causes always falls inside.
TRIAL_REMINDER_BEFORE = timedelta(days=3, hours=12)


class BillingError(Exception):
    """A billing change that cannot be applied as asked (the message says why)."""


@dataclass(frozen=True)
class SubscriptionSnapshot:
    subscription: Subscription
    previous: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.subscription.id)

    @property
    def data(self) -> dict[str, Any]:
        return self.subscription.stripe_data

    @property
    def status(self) -> str:
        return str(self.data.get("status") or "")

    @property
    def previous_status(self) -> str:
        return str(self.previous.get("status") or "")


def subscription_sync(
    *, subscription_id: str, remote: dict[str, Any] | None = None
) -> SubscriptionSnapshot:
    """Re-read the subscription from Stripe and mirror it; never trust an event's copy.

    ``remote`` is a read made for this call a moment ago (the drain reads ahead, concurrently).
    """
    previous = (
        Subscription.objects.filter(id=subscription_id)
        .values_list("stripe_data", flat=True)
        .first()
    )
    if remote is None:
        remote = stripe.Subscription.retrieve(subscription_id)
    subscription = Subscription.sync_from_stripe_data(remote, api_key=settings.STRIPE_SECRET_KEY)
    return SubscriptionSnapshot(subscription=subscription, previous=previous or {})


def customer_sync(*, customer_id: str) -> Customer:
    remote = stripe.Customer.retrieve(customer_id)
    return Customer.sync_from_stripe_data(remote, api_key=settings.STRIPE_SECRET_KEY)


# --- who holds a subscription -----------------------------------------------------------------


def _holders(subscription_id: str) -> tuple[Team | None, list[Member]]:
    """The team (company plan) or the individual member billed by this subscription."""
    team = Team.objects.filter(subscription_id=subscription_id).first()
    if team is not None:
        members = list(Member.objects.select_related("user", "team").filter(team=team))
        return team, members
    members = list(
        Member.objects.select_related("user").filter(
            subscription_id=subscription_id, team__isnull=True
        )
    )
    return None, members


def _member_name(member: Member) -> str:
    return member.discord_username or (member.user.email or "").split("@")[0] or "friend"


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --- checkout ---------------------------------------------------------------------------------


def _checkout_meta(session: dict[str, Any], snapshot: SubscriptionSnapshot) -> dict[str, Any]:
    meta = {**(snapshot.data.get("metadata") or {}), **(session.get("metadata") or {})}
    plan = meta.get("plan_type") or ("company" if meta.get("team_id") else "individual")
    reference = session.get("client_reference_id")
    member_id = _int_or_none(meta.get("member_id"))
    team_id = _int_or_none(meta.get("team_id"))
    if plan == "company" and team_id is None:
        team_id = _int_or_none(reference)
    if plan != "company" and member_id is None:
        member_id = _int_or_none(reference)
    return {
        "plan": plan,
        "member_id": member_id,
        "team_id": team_id,
        "replaces": str(meta.get("replaces") or ""),
    }


@transaction.atomic
def checkout_completed(
    *, session: dict[str, Any], now: datetime | None = None, cancel_duplicates: bool = True
) -> None:
    """Link the paid subscription to the purchaser (individual) or the pending team (company).

    ``cancel_duplicates=False`` (a repair long after the payment): a purchase that would be
    cancelled as a duplicate is refused with ``BillingError`` instead, for staff to decide.
    """
    now = now or timezone.now()
    if session.get("mode") != "subscription" or not session.get("subscription"):
        log.info("checkout_session_ignored", session_id=session.get("id"), mode=session.get("mode"))
        return
    subscription_id = str(session["subscription"])
    snapshot = subscription_sync(subscription_id=subscription_id)
    meta = _checkout_meta(session, snapshot)
    customer_id = str(session.get("customer") or snapshot.data.get("customer") or "")
    purchaser = (
        Member.objects.select_for_update().filter(pk=meta["member_id"]).first()
        if meta["member_id"] is not None
        else None
    )

    if meta["plan"] == "company":
        team = (
            Team.objects.select_for_update().filter(pk=meta["team_id"]).first()
            if meta["team_id"] is not None
            else None
        )
        if team is None:
            raise BillingError(f"checkout {session.get('id')} names no known team")
        # Linking happens once: a completion seen again (a replay, after the team ended and
        # its owner moved on) re-attaches nobody; a returning team has ``team_return``.
        linking = team.subscription_id != subscription_id
        # A move from the purchaser's individual plan: that plan is replaced, not kept.
        replacing = replacement_for(purchaser, meta["replaces"], company=True) if linking else ""
        held = [team.subscription_id or "", *_memberships_held(purchaser, team_id=team.pk)]
        held = [sid for sid in held if sid != replacing]  # a replaced plan is not kept
        if linking and _duplicate_cancel(held, snapshot, team, cancel=cancel_duplicates):
            return
        team.subscription_id = subscription_id
        team.stripe_customer_id = customer_id
        team.checkout_session_id = str(session.get("id") or "")
        if purchaser is not None and team.primary_owner_id is None:
            team.primary_owner = purchaser
        team.save()
        if (
            linking
            and purchaser is not None
            and (purchaser.team_id != team.pk or purchaser.seat_tier != SeatTier.OWNER)
        ):
            # A new company (first purchase, or a former member starting one) starts its own
            # access period, like a new individual subscription below; a member moving from
            # their individual plan keeps theirs (no gap, no second welcome).
            purchaser.team = team
            purchaser.seat_tier = SeatTier.OWNER
            if replacing:
                purchaser.subscription_id = ""
            else:
                purchaser.paid_at = None
            purchaser.save()
        completed: Member | Team = team
    else:
        if purchaser is None:
            raise BillingError(f"checkout {session.get('id')} names no known member")
        linking = purchaser.subscription_id != subscription_id
        # A move from the team plan the purchaser holds alone: that plan is replaced.
        replacing = replacement_for(purchaser, meta["replaces"], company=False) if linking else ""
        held = [sid for sid in _memberships_held(purchaser, team_id=None) if sid != replacing]
        if linking and _duplicate_cancel(held, snapshot, purchaser, cancel=cancel_duplicates):
            return
        if linking:
            # A new subscription (first purchase or a return): its own paid_at anchors claim
            # reminders and its own welcome email (the outbox episode is the subscription); a
            # move from a team plan keeps the access period it had.
            purchaser.subscription_id = subscription_id
            if not replacing:
                purchaser.paid_at = None
        purchaser.stripe_customer_id = customer_id or purchaser.stripe_customer_id
        purchaser.save()
        if replacing:
            # The team ends now (its owner is entitled by the new plan, so keeps access);
            # its subscription is cancelled below.
            team_end(
                team_id=purchaser.team_id,
                now=now,
                reason="its owner moved to an individual plan",
                actor_type=AuditActor.MEMBER,
            )
            purchaser.refresh_from_db()
        completed = purchaser
    if linking:  # a completion seen again (a replay, a late repair) changed nothing to record
        audit_record(
            actor_type=AuditActor.STRIPE,
            action=AuditAction.CHECKOUT_COMPLETED,
            target=completed,
            details={
                "subscription_id": subscription_id,
                "plan": "company" if isinstance(completed, Team) else "individual",
            },
        )
    subscription_apply(snapshot=snapshot, now=now)
    if replacing:
        replaced_subscription_end_request(
            subscription_id=replacing, replaced_by=subscription_id, member=purchaser
        )
        role_sync_request(member_id=purchaser.pk)


def checkout_recover(*, subscription_id: str, now: datetime | None = None) -> str:
    """Apply a completed Checkout whose ``checkout.session.completed`` never arrived.

    Reconciliation's repair for a subscription our Checkout created that nobody holds: the
    session that created it is read from Stripe and applied as its event would have been, so a
    completion that turns up later changes nothing. One difference: the repair may come a day
    after the payment, so a purchase that would now be cancelled as a duplicate (a plan move
    whose old plan has a payment problem by now, a second Checkout) is refused with
    ``BillingError`` for staff to decide, and nothing is cancelled. Returns the session id, or
    '' when the subscription is held by now (its completion arrived meanwhile).
    """
    held = Member.objects.filter(subscription_id=subscription_id).exists()
    if held or Team.objects.filter(subscription_id=subscription_id).exists():
        return ""
    sessions = stripe.checkout.Session.list(subscription=subscription_id, limit=1)
    session = next((s for s in sessions.data if s.get("status") == "complete"), None)
    if session is None:
        raise BillingError(f"no completed Checkout created subscription {subscription_id}")
    checkout_completed(session=session.to_dict(), now=now, cancel_duplicates=False)
    return str(session["id"])


def _memberships_held(purchaser: Member | None, *, team_id: int | None) -> list[str]:
    """The subscriptions that bill the purchaser's membership now: their own plan, and the
    plan of a team other than ``team_id`` whose seat they hold."""
    if purchaser is None:
        return []
    held = [purchaser.subscription_id]
    if purchaser.team_id is not None and purchaser.team_id != team_id:
        held.append(purchaser.team.subscription_id or "")
    return held


def _duplicate_cancel(
    held: list[str], duplicate: SubscriptionSnapshot, target: Member | Team, *, cancel: bool
) -> bool:
    """A second Checkout was paid (two tabs, both paid: the same plan twice, or an individual
    plan and a company) while the person or team already holds a membership that Stripe still
    bills (one of ``held``): the later subscription is a duplicate.

    It is cancelled in Stripe so it never renews, and audited for staff to refund its first
    payment; the membership stays on the subscription it holds, whichever completion arrives
    first. True when ``duplicate`` is one (then nothing else is done); False when every held
    subscription has ended, so the new one is a fresh start.
    """
    live = [
        sid
        for sid in dict.fromkeys(held)
        if sid
        and sid != duplicate.id
        and subscription_sync(subscription_id=sid).status in LIVE_STATUSES
    ]
    if not live:
        return False
    kept = live[0]
    status = duplicate.status
    if status not in ENDED_STATUSES:  # a duplicate already over needs nothing more
        if not cancel:
            raise BillingError(
                f"{duplicate.id} was paid while {kept} still bills {target} (a second Checkout, "
                "or a plan move that can no longer replace it): cancel and refund one by hand"
            )
        status = lifecycle.cancel_in_stripe(duplicate.id)
        audit_record(
            actor_type=AuditActor.STRIPE,
            action=AuditAction.DUPLICATE_SUBSCRIPTION_CANCELLED,
            target=target,
            details={"subscription_id": duplicate.id, "kept": kept, "status": status},
            reason="a second checkout of the same plan was paid; refund its payment",
        )
    log.warning("duplicate_subscription", subscription_id=duplicate.id, kept=kept, status=status)
    return True


# --- subscription state -----------------------------------------------------------------------


@transaction.atomic
def subscription_apply(*, snapshot: SubscriptionSnapshot, now: datetime | None = None) -> None:
    """Converge seats and access of whoever holds this subscription to its current state."""
    now = now or timezone.now()
    team, members = _holders(snapshot.id)
    if team is None and not members:
        log.info("subscription_unclaimed", subscription_id=snapshot.id, status=snapshot.status)
        return
    if snapshot.status in PAID_STATUSES:
        lifecycle.removal_settle(subscription_id=snapshot.id, status=snapshot.status, now=now)
    entitled = paid_up(subscription_facts(snapshot.id, status=snapshot.status))
    changed: set[int] = set()

    if team is not None:
        # By each price's role in the catalogue: any plan, any interval.
        seats = seat_counts(snapshot.data)
        owner_seats, team_seats = seats[SeatTier.OWNER], seats[SeatTier.TEAM]
        if (owner_seats, team_seats) != (team.owner_seats, team.team_seats):
            audit_record(
                actor_type=AuditActor.STRIPE,
                action=AuditAction.SEATS_UPDATED,
                target=team,
                details={
                    "subscription_id": snapshot.id,
                    "owner_seats": [team.owner_seats, owner_seats],
                    "team_seats": [team.team_seats, team_seats],
                },
            )
            team.owner_seats, team.team_seats = owner_seats, team_seats
            team.save(update_fields=["owner_seats", "team_seats"])
            changed.update(m.pk for m in members)
        if entitled and team.cancelled_at is not None:
            # The same subscription entitles the team again (e.g. an unpaid one was settled).
            team_return(team_id=team.pk, now=now)
            team, members = _holders(snapshot.id)
        elif not entitled and team.cancelled_at is None and snapshot.status != "incomplete":
            audit_record(
                actor_type=AuditActor.STRIPE,
                action=AuditAction.SUBSCRIPTION_ENDED,
                target=team,
                details={"subscription_id": snapshot.id, "status": snapshot.status},
            )
        if entitled and seats_release_excess(team_id=team.pk, now=now):
            # Fewer seats paid than claimed: the released are already off the team.
            team, members = _holders(snapshot.id)

    for member in members:
        if entitled and (member.paid_at is None or member.cancelled_at is not None):
            _access_grant(member=member, snapshot=snapshot, team=team, now=now)
            changed.add(member.pk)
        elif not entitled and member.paid_at is not None and member.cancelled_at is None:
            if complimentary_active(member_facts(member), now):
                # Entitled without a subscription: access ends when the
                # complimentary membership does, through its own ending.
                changed.add(member.pk)
                continue
            _access_end(member=member, snapshot=snapshot, now=now)
            changed.add(member.pk)
    if team is not None and not entitled and snapshot.status != "incomplete":
        # Every member leaves the ended team; also heals a team that ended before
        # members were detached, on its next event or reconciliation.
        changed.update(
            team_end(team_id=team.pk, now=now, reason=f"team subscription {snapshot.status}")
        )

    if not entitled:
        _episodes_close(
            subscription_id=snapshot.id, reason=FailureEpisode.CloseReason.CANCELLED, now=now
        )
    if snapshot.previous and snapshot.previous_status != snapshot.status:
        audit_record(
            actor_type=AuditActor.STRIPE,
            action=AuditAction.SUBSCRIPTION_STATUS_CHANGED,
            target=team or members[0],
            details={
                "subscription_id": snapshot.id,
                "status": [snapshot.previous_status, snapshot.status],
            },
        )
        changed.update(m.pk for m in members)
    if entitled:
        _trial_reminder(snapshot=snapshot, team=team, members=members, now=now)
    for member_id in sorted(changed):
        role_sync_request(member_id=member_id)


def _trial_reminder(
    *, snapshot: SubscriptionSnapshot, team: Team | None, members: list[Member], now: datetime
) -> None:
    """Remind whoever pays that the free trial ends soon, once per trial end.

    Decided from the subscription as read, not from the event: Stripe sends
    ``customer.subscription.trial_will_end`` three days before the end, and the read it causes
    lands here; so does any other read in that window (a late or lost event changes nothing).
    Whether the trial then becomes a paid period, a failed payment or an ending is Stripe's
    outcome, applied like any other change of the subscription.
    """
    ends = trial_end(snapshot.data)
    if ends is None or not now < ends <= now + TRIAL_REMINDER_BEFORE:
        return
    for member in members:
        if not member.user.email or (team is not None and member.seat_tier != SeatTier.OWNER):
            continue
        notification_enqueue(
            kind="trial_ending",
            channel="email",
            recipient=member.user.email,
            episode=f"{snapshot.id}:trial:{int(ends.timestamp())}",
            member=member,
            context={
                "member_name": _member_name(member),
                "team_name": team.name if team else "",
                "trial_end": ends.isoformat(),
                "has_card": bool(snapshot.data.get("default_payment_method")),
            },
        )


def _access_grant(
    *, member: Member, snapshot: SubscriptionSnapshot, team: Team | None, now: datetime
) -> None:
    returning = member.cancelled_at is not None
    # A first payment or a return starts a new access period: claim reminders and the
    # farewell of its ending count from here.
    member.paid_at = now
    member.cancelled_at = None
    member.save(update_fields=["paid_at", "cancelled_at", "updated_at"])
    audit_record(
        actor_type=AuditActor.STRIPE,
        action=AuditAction.ACCESS_RESTORED if returning else "subscription_activated",
        target=member,
        details={"subscription_id": snapshot.id, "status": snapshot.status},
    )
    # Seats claimed through an invite get their own welcome with the claim; the purchaser (or
    # individual subscriber) gets this one, once per subscription.
    welcomed = None
    if team is None or team.primary_owner_id == member.pk:
        period_end = subscription_period_end(snapshot.data)
        welcomed = notification_enqueue(
            kind="welcome",
            channel="email",
            recipient=member.user.email or "",
            episode=snapshot.id,
            member=member,
            context={
                "member_name": _member_name(member),
                "team_name": team.name if team else "",
                "link": f"{settings.APP_URL}/claim/",
                "period_end": period_end.isoformat() if period_end else "",
            },
        )
    if returning and welcomed is None and member.discord_id and not member.in_guild:
        # The same subscription paid again after access ended and we kicked them (a removal
        # after Debtor, the subscription kept): no new welcome, so the way back into the
        # guild, once per absence (the email the daily reconciliation would send a day later).
        guild_rejoin_request(member_id=member.pk)


def _access_end(*, member: Member, snapshot: SubscriptionSnapshot, now: datetime) -> None:
    # Cancelled, intro to redo, farewell DM, roles removed and kicked (billing/lifecycle.py).
    lifecycle.member_access_end(
        member=member, subscription_id=snapshot.id, reason=snapshot.status, now=now
    )


# --- payment failure timeline -----------------------------------------------------------------


def _episodes_close(*, subscription_id: str, reason: str, now: datetime) -> list[FailureEpisode]:
    episodes = list(
        FailureEpisode.objects.select_for_update().filter(
            subscription_id=subscription_id, closed_at__isnull=True
        )
    )
    for episode in episodes:
        episode.closed_at = now
        episode.close_reason = reason
        episode.save(update_fields=["closed_at", "close_reason"])
        audit_record(
            actor_type=AuditActor.STRIPE,
            action=AuditAction.FAILURE_EPISODE_CLOSED,
            target=episode,
            details={"subscription_id": subscription_id, "reason": reason},
        )
    return episodes


def _holders_have_access(team: Team | None, members: list[Member]) -> bool:
    if team is not None:
        return team.cancelled_at is None
    return any(member.cancelled_at is None for member in members)


@transaction.atomic
def payment_failed_recorded(
    *,
    subscription_id: str,
    invoice_id: str,
    subscription: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> FailureEpisode | None:
    """Open the failure episode if Stripe says this renewal is failing now; else None.

    Only a ``subscription_cycle`` invoice that is still open and unpaid, on a subscription
    still ``past_due``/``unpaid``, opens one (a failed first payment or seat proration never
    had access to lose; a failure Stripe already forgot — paid since — is old news). Repeats
    keep the original clock. ``subscription`` is Stripe's current copy when the caller has
    just read it. The lifecycle (grace reminders, Debtor, removal) runs in ``billing_tick``.
    """
    now = now or timezone.now()
    if not invoice_id:
        return None
    if subscription_facts(subscription_id).removed:
        # Its members were removed for this unpaid subscription already; Stripe retrying it
        # starts no new timeline (and no messages) for people who no longer have access.
        log.info("payment_failed_after_removal", subscription_id=subscription_id)
        return None
    existing = FailureEpisode.objects.filter(
        subscription_id=subscription_id, closed_at__isnull=True
    ).first()
    if existing is not None:
        return existing
    team, members = _holders(subscription_id)
    if team is None and not members:
        log.warning("payment_failed_unclaimed", subscription_id=subscription_id)
        return None
    # "unpaid" ends entitlement: subscription_apply has already ended their access,
    # so there is no grace left to give.
    if not _holders_have_access(team, members):
        return None
    subscription = subscription or subscription_read(subscription_id)
    invoice = invoice_read(invoice_id)
    if not invoice_is_failing(invoice, subscription):
        log.info(
            "payment_failure_not_current",
            subscription_id=subscription_id,
            invoice_id=invoice_id,
            invoice_status=invoice.get("status"),
            billing_reason=invoice.get("billing_reason"),
            subscription_status=subscription.get("status"),
        )
        return None
    grace = timedelta(hours=GatewayConfig.load().grace_hours)
    try:
        with transaction.atomic():
            episode = FailureEpisode.objects.create(
                subscription_id=subscription_id,
                member=members[0] if team is None else None,
                team=team,
                invoice_id=invoice_id,
                opened_at=now,
                grace_ends_at=now + grace,
            )
    except IntegrityError:
        # A concurrent delivery of a sibling event opened it first: same timeline.
        return FailureEpisode.objects.get(subscription_id=subscription_id, closed_at__isnull=True)
    audit_record(
        actor_type=AuditActor.STRIPE,
        action=AuditAction.PAYMENT_FAILED,
        target=episode,
        details={
            "subscription_id": subscription_id,
            "invoice_id": episode.invoice_id,
            "grace_ends_at": episode.grace_ends_at.isoformat(),
        },
    )
    lifecycle.episode_opened(episode=episode, now=now)
    for member in members:
        role_sync_request(member_id=member.pk)
    return episode


@transaction.atomic
def payment_recovered(
    *,
    subscription_id: str,
    subscription: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> list[FailureEpisode]:
    """Close the open failure episode if Stripe says its invoice (or a later one) is paid."""
    now = now or timezone.now()
    episode = (
        FailureEpisode.objects.select_for_update()
        .filter(subscription_id=subscription_id, closed_at__isnull=True)
        .first()
    )
    if episode is None:
        return []
    subscription = subscription or subscription_read(subscription_id)
    paid = episode_paid_invoice(episode=episode, subscription=subscription)
    if paid is None:
        return []
    closed = _episodes_close(
        subscription_id=subscription_id, reason=FailureEpisode.CloseReason.RECOVERED, now=now
    )
    for recovered in closed:
        lifecycle.episode_recovered(episode=recovered, now=now)
    _, members = _holders(subscription_id)
    for member in members:
        role_sync_request(member_id=member.pk)
    return closed


def payment_state_converge(
    *, snapshot: SubscriptionSnapshot, invoice_id: str = "", now: datetime | None = None
) -> None:
    """After any event about a subscription or its invoices: open or close its episode as
    Stripe's current state justifies. ``invoice_id`` names the event's invoice; without one
    the subscription's latest invoice is the candidate for a failure (and is also looked at
    when the event's invoice is not failing)."""
    # A recovery does not end the look: the next renewal may be failing already (both seen in
    # one read, or the newer failure heard of first), and it opens its own episode.
    payment_recovered(subscription_id=snapshot.id, subscription=snapshot.data, now=now)
    if snapshot.status not in FAILING_STATUSES:
        return
    latest = object_id(snapshot.data.get("latest_invoice"))
    for candidate in dict.fromkeys(c for c in (invoice_id, latest) if c):
        if payment_failed_recorded(
            subscription_id=snapshot.id, invoice_id=candidate, subscription=snapshot.data, now=now
        ):
            return
