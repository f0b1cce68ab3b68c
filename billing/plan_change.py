"""Changing plans: another interval or plan of the same kind, or between individual and company.

**Same kind (monthly ↔ yearly, or another plan of the same kind)**: one subscription update in
Stripe, each item given the new option's price of its role (quantities kept), prorated and
invoiced at once (``always_invoice``) with ``error_if_incomplete``: the unused time of the old
price is credited against the new one, and a declined payment changes nothing. The
subscription stays the same, so access never stops. Seats and roles are not touched here: they
follow the subscription as read when ``customer.subscription.updated`` arrives (SPEC §2a).

Why a subscription update and not the billing portal: the portal only updates subscriptions
with a single item (a company plan has owner and team seat items), and knows nothing of our
catalogue's roles.

**Individual ↔ company**: Stripe cannot move a subscription to another customer, and a
company plan bills through the team's own customer (``billing.checkout``). So the move is a new
Checkout naming the subscription it ``replaces``; once that Checkout is paid,
:func:`replaced_subscription_end` (a task, once the move is committed) refunds the unused
time of the old subscription's last payment and cancels it. Until then the old plan keeps the
member's access, so there is no gap, and nothing is paid twice. The move back from a company
plan is offered to its primary owner while nobody else holds a seat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import stripe
import structlog
from django.db import transaction
from django_q.tasks import async_task

from billing import lifecycle
from billing.catalogue import (
    PlanOffer,
    PlanOption,
    option_chosen,
    price_roles,
)
from billing.checkout import (
    CHARGED_NOW,
    CheckoutError,
    charged_now_or_unchanged,
    individual_replaceable_by_company,
    plan_change_refusal,
    team_has_others,
)
from billing.models import Plan
from billing.truth import ENDED_STATUSES, subscription_read_with_latest_invoice
from members.models import Member, SeatTier
from members.sync import RETRY_UNTIL_DONE
from ops.models import AuditAction, AuditActor
from ops.services import audit_actor, audit_record

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PlanChoices:
    """What the dashboard offers a member who pays for their plan."""

    kind: str  # the kind of plan they hold
    current: str  # the key of the option they pay for ('' when it is no longer on sale)
    switches: list[PlanOffer]  # the offers of the same kind: the other options are the changes
    to_company: bool  # an individual plan may move to a company plan (one is on sale)
    to_individual: list[PlanOffer]  # individual offers, for a primary owner alone on the team

    @property
    def switchable(self) -> bool:
        """More than one option of this kind is on sale: there is something to switch to."""
        return sum(len(offer.options) for offer in self.switches) > 1


def _kind_and_sub(member: Member) -> tuple[str, str]:
    if member.team_id is not None:
        return Plan.Kind.COMPANY, member.team.subscription_id or ""
    return Plan.Kind.INDIVIDUAL, member.subscription_id


def plan_choices(
    member: Member, *, offers: list[PlanOffer], billed: PlanOption | None
) -> PlanChoices | None:
    """The changes open to the member now; None when there are none (nothing paid up to
    change, someone else manages the team's billing, or nothing else is on sale).

    ``offers``: every plan on sale (``plans_offered()``); ``billed``: the option the member's
    subscription is billed at (``BillingSummary.option``): the dashboard has read both.
    """
    kind, subscription_id = _kind_and_sub(member)
    if kind == Plan.Kind.COMPANY and member.seat_tier != SeatTier.OWNER:
        return None
    if plan_change_refusal(subscription_id):
        return None
    by_kind = {k: [offer for offer in offers if offer.plan.kind == k] for k in Plan.Kind.values}
    alone = kind == Plan.Kind.COMPANY and (
        member.team.primary_owner_id == member.pk and not team_has_others(member.team, member)
    )
    choices = PlanChoices(
        kind=kind,
        current=billed.key if billed else "",
        switches=by_kind[kind],
        to_company=kind == Plan.Kind.INDIVIDUAL and bool(by_kind[Plan.Kind.COMPANY]),
        to_individual=by_kind[Plan.Kind.INDIVIDUAL] if alone else [],
    )
    return choices if choices.switchable or choices.to_company or choices.to_individual else None


@transaction.atomic
def plan_switch(*, member: Member, key: str) -> PlanOption:
    """Move the member's (or their team's) subscription to another option of the same kind.

    Returns the option now paid for. Refused, with a reason the member can read, when they do
    not manage the plan, it is not paid up, the option is not on sale or is the current one, or
    the card is declined (then nothing changed).
    """
    member = Member.objects.select_for_update(of=("self",)).select_related("team").get(pk=member.pk)
    kind, subscription_id = _kind_and_sub(member)
    if kind == Plan.Kind.COMPANY and member.seat_tier != SeatTier.OWNER:
        raise CheckoutError("Billing for your seat is managed by your team's owners.")
    refusal = plan_change_refusal(subscription_id)
    if refusal:
        raise CheckoutError(refusal)
    option = option_chosen(kind=kind, key=key)
    roles = price_roles()
    with charged_now_or_unchanged(
        "subscription.update", refused="your plan was not changed", member_id=member.pk
    ):
        # The live items, not the mirror: each keeps its quantity and takes its role's price.
        items = list(
            stripe.SubscriptionItem.list(subscription=subscription_id, limit=100).auto_paging_iter()
        )
        changes = [
            {"id": item.id, "price": option.price_id(roles[item.price.id])}
            for item in items
            if roles.get(item.price.id) in option.prices
            and item.price.id != option.price_id(roles[item.price.id])
        ]
        if not changes:
            raise CheckoutError("That is the plan you have already.")
        stripe.Subscription.modify(subscription_id, items=changes, **CHARGED_NOW)
    audit_record(
        **audit_actor(member, AuditActor.MEMBER),
        action=AuditAction.BILLING_PLAN_CHANGED,
        target=member.team if kind == Plan.Kind.COMPANY else member,
        details={
            "subscription_id": subscription_id,
            "plan_id": option.plan.pk,
            "prices": [[c["id"], c["price"]] for c in changes],
        },
    )
    return option


def replacement_for(member: Member | None, replaces: str, *, company: bool) -> str:
    """``replaces`` when a paid Checkout may end that subscription of ``member``: for a company
    plan, the member's own individual subscription; for an individual plan, the team plan whose
    primary owner they are, with nobody else on it (decided again now, not when the Checkout
    began). '' otherwise: the new subscription is then judged like any other purchase."""
    if member is None or not replaces:
        return ""
    try:
        if company:
            mine = member.team_id is None and member.subscription_id == replaces
            return replaces if mine and individual_replaceable_by_company(member) else ""
        team = member.team
        if team is None or team.subscription_id != replaces:
            return ""
        if team.primary_owner_id != member.pk or team_has_others(team, member):
            return ""
        return "" if plan_change_refusal(replaces) else replaces
    except CheckoutError:
        return ""


def replaced_subscription_end_request(
    *, subscription_id: str, replaced_by: str, member: Member
) -> None:
    """End the replaced subscription once this transaction commits (retried until done).

    Not inside it: Stripe announces the cancellation at once, and the worker that applies that
    event must find the member already on the new plan, not a member whose only plan ended.
    """
    transaction.on_commit(
        lambda: async_task(
            "billing.tasks.subscription_replaced_end",
            subscription_id,
            replaced_by,
            member.pk,
            **RETRY_UNTIL_DONE,
        )
    )


def replaced_subscription_end(*, subscription_id: str, replaced_by: str, target: Any) -> int:
    """End a subscription another one replaced: refund the unused time of its last payment,
    then cancel it now. Returns the amount refunded (in the currency's minor unit).

    Decided from Stripe's current state, so it can run again (a retried or replayed event): a
    subscription already ended is left alone, and the refund carries an idempotency key.
    """
    subscription, invoice = subscription_read_with_latest_invoice(subscription_id)
    if subscription.get("status") in ENDED_STATUSES:
        return 0
    refunded, refused = _unused_refund(subscription, invoice, replaced_by=replaced_by)
    lifecycle.cancel_in_stripe(subscription_id)
    audit_record(
        actor_type=AuditActor.STRIPE,
        action=AuditAction.SUBSCRIPTION_REPLACED,
        target=target,
        details={
            "subscription_id": subscription_id,
            "replaced_by": replaced_by,
            "refunded": refunded,
            "currency": (invoice or {}).get("currency") or "",
            **({"refund_refused": refused} if refused else {}),
        },
        reason="the member moved to another plan",
    )
    log.info(
        "subscription_replaced",
        subscription_id=subscription_id,
        replaced_by=replaced_by,
        refunded=refunded,
    )
    return refunded


def unused_share(subscription: dict[str, Any], now: float) -> float:
    """The part of the current period still to come (0 to 1): what a refund gives back."""
    items = (subscription.get("items") or {}).get("data") or []
    if not items:
        return 0.0
    start = int(items[0].get("current_period_start") or 0)
    end = int(items[0].get("current_period_end") or 0)
    if end <= start:
        return 0.0
    return min(1.0, max(0.0, (end - now) / (end - start)))


def _refund_made(payment_intent: str, *, subscription_id: str) -> int | None:
    """The amount this replacement refunded already, as Stripe lists it; None when none was.

    Read from Stripe because the idempotency key alone lasts 24 hours, and a retry works out
    a smaller unused share than the first attempt did.
    """
    refunds = stripe.Refund.list(payment_intent=payment_intent, limit=100)
    ours = [
        int(refund.get("amount") or 0)
        for refund in refunds.get("data") or []
        if (refund.get("metadata") or {}).get("subscription_id") == subscription_id
        and (refund.get("metadata") or {}).get("replaced_by")
        and refund.get("status") not in ("failed", "canceled")
    ]
    return sum(ours) if ours else None


def _unused_refund(
    subscription: dict[str, Any], invoice: dict[str, Any] | None, *, replaced_by: str
) -> tuple[int, str]:
    """Refund the unused share of the latest invoice if it was paid (a trial or an unpaid
    renewal gives nothing back), less what was refunded of that payment already.

    Returns the amount and, when Stripe refused the refund (the payment was disputed
    meanwhile, say), its error code: that does not hold up the move, and the audit entry shows
    staff what is left to settle. Stripe being unavailable is retried.
    """
    if not invoice or invoice.get("status") != "paid" or subscription.get("status") == "trialing":
        return 0, ""
    unused = int(int(invoice.get("amount_paid") or 0) * unused_share(subscription, time.time()))
    try:
        payments = stripe.InvoicePayment.list(invoice=invoice["id"], limit=10)
        intents = [
            p["payment"].get("payment_intent")
            for p in payments.get("data") or []
            if p.get("status") == "paid" and (p.get("payment") or {}).get("payment_intent")
        ]
        if not intents:
            return 0, ""
        made = _refund_made(intents[0], subscription_id=subscription["id"])
        if made is not None:
            return made, ""  # a retry after the refund went through (any day later)
        if unused <= 0:
            return 0, ""
        charges = stripe.Charge.list(payment_intent=intents[0], limit=10)
        left = sum(
            int(c.get("amount") or 0) - int(c.get("amount_refunded") or 0)
            for c in charges.get("data") or []
            if c.get("status") == "succeeded"
        )
        amount = min(unused, left)
        if amount <= 0:
            return 0, ""
        stripe.Refund.create(
            payment_intent=intents[0],
            amount=amount,
            reason="requested_by_customer",
            metadata={"subscription_id": subscription["id"], "replaced_by": replaced_by},
            idempotency_key=f"replaced-{subscription['id']}-refund",
        )
    except stripe.InvalidRequestError as exc:
        log.warning(
            "replaced_subscription_refund_refused",
            subscription_id=subscription["id"],
            code=getattr(exc, "code", None),
        )
        return 0, str(getattr(exc, "code", None) or "refused")
    except stripe.StripeError as exc:
        raise lifecycle.LifecycleError(
            f"Stripe unavailable refunding {subscription['id']}: {exc}"
        ) from exc
    return amount, ""
