"""Disputes (chargebacks) and refunds of subscription payments.

A dispute on a payment of a member's or a team's subscription suspends access at once: the
entitlement rule (``billing.entitlement``) treats an open ``Dispute`` row as *suspended*, so
the role sync removes the managed role without a kick. Closed as won, access comes back; lost,
the membership ends like a cancellation (the subscription is cancelled in Stripe if it is still
live, then ``subscription_apply`` takes the normal ending path: farewell, roles removed, kick).
The member and staff (admin channel and ``ADMIN_EMAIL``) are told through the outbox.

Refunds change nothing by themselves: they are audited on the member (or team), which the
console shows.

Nothing is taken from an event's payload: the dispute (or charge) is re-read from Stripe, and
the subscription is found from the payment it concerns — the payment intent's invoice payment
(``/v1/invoice_payments``), its invoice, and the invoice's subscription.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import stripe
import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import lifecycle, services
from billing.entitlement import Access, member_access
from billing.models import Dispute
from billing.truth import ENDED_STATUSES, invoice_subscription_id
from members.models import Member, Team
from members.sync import role_sync_request
from ops.models import AuditAction, AuditActor, AuditLog
from ops.services import audit_record, notification_enqueue

log = structlog.get_logger(__name__)

# Stripe's dispute statuses while the bank has not decided; everything else is closed.
OPEN_STATUSES = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review"}
)
# Closed statuses that leave the money with us (``warning_closed``: an inquiry that never
# became a chargeback; ``prevented``: stopped before it was filed).
WON_STATUSES = frozenset({"won", "warning_closed", "prevented"})


def payment_invoice(payment_intent: str) -> tuple[str, str]:
    """(invoice id, subscription id) a payment paid, re-read from Stripe; ("", "") if none."""
    if not payment_intent:
        return "", ""
    payments = stripe.InvoicePayment.list(
        payment={"type": "payment_intent", "payment_intent": payment_intent}, limit=1
    )
    if not payments.data:
        return "", ""
    invoice_id = str(payments.data[0]["invoice"])
    invoice = stripe.Invoice.retrieve(invoice_id)
    return invoice_id, invoice_subscription_id(invoice)


def dispute_sync(*, dispute_id: str, now: datetime | None = None) -> Dispute | None:
    """Converge to the dispute as Stripe reports it now (``charge.dispute.*`` events)."""
    now = now or timezone.now()
    remote = stripe.Dispute.retrieve(dispute_id)
    invoice_id, subscription_id = payment_invoice(str(remote.get("payment_intent") or ""))
    if not subscription_id:
        log.info("dispute_not_on_a_subscription", dispute_id=dispute_id)
        return None
    status = str(remote.get("status") or "")
    if status == "lost":
        # Ended like a cancellation: Stripe first (if it still bills), then the normal ending
        # from its answer. A failure here raises before anything is recorded, so the event's
        # retry does it all again.
        snapshot = services.subscription_sync(subscription_id=subscription_id)
        if snapshot.status not in ENDED_STATUSES:
            lifecycle.cancel_in_stripe(subscription_id)
            snapshot = services.subscription_sync(subscription_id=subscription_id)
        services.subscription_apply(snapshot=snapshot, now=now)
    return dispute_apply(
        dispute=dict(remote), subscription_id=subscription_id, invoice_id=invoice_id, now=now
    )


@transaction.atomic
def dispute_apply(
    *, dispute: dict[str, Any], subscription_id: str, invoice_id: str, now: datetime
) -> Dispute:
    """Record the dispute's state; on opening or closing, audit, notify and re-sync roles."""
    status = str(dispute.get("status") or "")
    is_open = status in OPEN_STATUSES
    row = Dispute.objects.select_for_update().filter(dispute_id=str(dispute["id"])).first()
    opened = closed = False
    if row is None:
        row = Dispute(dispute_id=str(dispute["id"]), opened_at=now)
        opened = True
    row.subscription_id = subscription_id
    row.invoice_id = invoice_id
    row.charge_id = str(dispute.get("charge") or "")
    row.status = status
    row.reason = str(dispute.get("reason") or "")
    row.amount = int(dispute.get("amount") or 0)
    row.currency = str(dispute.get("currency") or "")
    if not is_open and row.closed_at is None:
        row.closed_at = now
        row.outcome = Dispute.Outcome.WON if status in WON_STATUSES else Dispute.Outcome.LOST
        closed = True
    row.save()
    if not (opened and is_open) and not closed:
        return row  # a replay, or evidence submitted: nothing changes for anyone

    team, members = services._holders(subscription_id)
    action = (
        AuditAction.DISPUTE_OPENED if opened and is_open else AuditAction(f"dispute_{row.outcome}")
    )
    if team is not None or members:
        audit_record(
            actor_type=AuditActor.STRIPE,
            action=action,
            target=team or members[0],
            details={
                "dispute_id": row.dispute_id,
                "subscription_id": subscription_id,
                "status": status,
                "amount": row.amount,
                "currency": row.currency,
                "reason": row.reason,
            },
        )
    _notify_staff(row, members=members, team=team)
    if opened and is_open:
        _notify_members(members, kind="dispute_opened", row=row)
    elif row.outcome == Dispute.Outcome.WON and not opened:
        # Only a suspension we applied is lifted: a dispute first seen already won (its
        # events arrived late, or in reverse) never paused anyone's access. And "access is
        # back" only to those it is back for (not a Debtor, whose renewal is still unpaid).
        back = [m for m in members if member_access(m, now) == Access.ENTITLED]
        _notify_members(back, kind="dispute_won", row=row)
    for member in members:
        role_sync_request(member_id=member.pk)
    return row


def _notify_members(members: list[Member], *, kind: str, row: Dispute) -> None:
    """The billing contact hears by email, everyone linked by DM (like the failure messages).

    Members whose access had already ended are not told about access they no longer have.
    """
    for member in members:
        if member.cancelled_at is not None:
            continue
        channels = [("dm", member.discord_id)]
        if lifecycle.pays(member):
            channels.append(("email", member.user.email))
        for channel, recipient in channels:
            if recipient:
                notification_enqueue(
                    kind=kind,
                    channel=channel,
                    recipient=recipient,
                    episode=f"dispute:{row.dispute_id}:{kind}",
                    member=member,
                    context={"team_name": member.team.name if member.team_id else ""},
                )


def _notify_staff(row: Dispute, *, members: list[Member], team: Team | None) -> None:
    context = {
        "dispute_id": row.dispute_id,
        "subscription_id": row.subscription_id,
        "status": row.status,
        "outcome": row.outcome or "open",
        "amount": f"{row.amount / 100:.2f} {row.currency.upper()}",
        "reason": row.reason,
        "holder": team.name if team is not None else ", ".join(str(m) for m in members),
    }
    for channel, recipient in (
        ("admin_channel", settings.DISCORD_ADMIN_CHANNEL_ID),
        ("email", settings.ADMIN_EMAIL),
    ):
        if recipient:
            notification_enqueue(
                kind="dispute_staff",
                channel=channel,
                recipient=recipient,
                episode=f"dispute:{row.dispute_id}:{row.outcome or 'open'}",
                context=context,
            )


@transaction.atomic
def refund_record(*, charge_id: str) -> bool:
    """Audit a refund of a subscription payment (``charge.refunded``); it changes no access.

    Re-reads the charge; one audit row per refunded total, so a replayed event adds nothing.
    """
    charge = stripe.Charge.retrieve(charge_id)
    invoice_id, subscription_id = payment_invoice(str(charge.get("payment_intent") or ""))
    if not subscription_id:
        return False
    team, members = services._holders(subscription_id)
    if team is None and not members:
        return False
    refunded = int(charge.get("amount_refunded") or 0)
    if AuditLog.objects.filter(
        action=AuditAction.CHARGE_REFUNDED,
        details__charge_id=charge_id,
        details__amount_refunded=refunded,
    ).exists():
        return False
    audit_record(
        actor_type=AuditActor.STRIPE,
        action=AuditAction.CHARGE_REFUNDED,
        target=team or members[0],
        details={
            "charge_id": charge_id,
            "invoice_id": invoice_id,
            "subscription_id": subscription_id,
            "amount": int(charge.get("amount") or 0),
            "amount_refunded": refunded,
            "currency": str(charge.get("currency") or ""),
            "fully_refunded": bool(charge.get("refunded")),
        },
    )
    return True
