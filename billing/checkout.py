"""Starting payments: Checkout sessions, billing-portal sessions and seat additions.

Stripe stays the source of truth: nothing here marks anyone as paid or changes seat counts.
Those arrive from webhooks (``checkout.session.completed``, ``customer.subscription.updated``),
which find the member or team from the metadata written here:

    metadata = subscription_data[metadata] = {
        "plan_type": "individual" | "company",
        "member_id": "<purchasing Member pk>",
        "team_id": "<pending Team pk>",          # company only
    }
    client_reference_id = "member-<pk>" | "team-<pk>"

stripe-python is configured once by ``billing.stripe_client.configure_stripe`` (API base,
timeout, bounded retries with idempotency keys).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import stripe
import structlog
from django.conf import settings
from django.db import transaction
from djstripe.models import Subscription

from billing.catalogue import PlanOption, option_chosen, price_roles, seat_price
from billing.models import Dispute, Plan
from members.models import Member, SeatTier, Team
from ops.errors import ServiceError
from ops.models import AuditAction, AuditActor
from ops.services import audit_actor, audit_record

log = structlog.get_logger(__name__)

# Subscription statuses that still hold (or are about to recover) access: a member in any of
# them must fix or manage that subscription instead of buying a second one.
LIVE_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid"})
# Statuses from which a plan may change: paid up (or in a trial).
SWITCHABLE_STATUSES = frozenset({"active", "trialing"})
SEAT_ADD_MAX = 50


class CheckoutError(ServiceError):
    """A refusal the member can read; the message is safe to show on the page."""


@dataclass(frozen=True)
class SeatChange:
    tier: str
    previous_quantity: int
    new_quantity: int
    item_id: str


def _app_url(path: str) -> str:
    return f"{settings.APP_URL}{path}"


def stripe_failed(exc: stripe.StripeError, operation: str) -> CheckoutError:
    # The Stripe message can name internal ids; log the code, show a generic sentence.
    log.warning(
        "stripe_call_failed",
        operation=operation,
        error_type=type(exc).__name__,
        code=getattr(exc, "code", None),
        http_status=getattr(exc, "http_status", None),
    )
    return CheckoutError("The payment service is not available right now. Please try again.")


# A change to a live subscription, prorated and invoiced at once; a declined payment refuses it
# (Stripe's default would keep the change unpaid, with the whole subscription past_due).
CHARGED_NOW = {"proration_behavior": "always_invoice", "payment_behavior": "error_if_incomplete"}


@contextmanager
def charged_now_or_unchanged(operation: str, *, refused: str, **ids: Any) -> Iterator[None]:
    """Around Stripe calls made with :data:`CHARGED_NOW`: a declined card becomes a refusal the
    member can read ("Your card was declined, so ``refused``."), any other Stripe failure the
    generic one; in both cases the subscription is as it was."""
    try:
        yield
    except stripe.CardError as exc:
        log.info("charge_declined", operation=operation, code=getattr(exc, "code", None), **ids)
        raise CheckoutError(
            f"Your card was declined, so {refused}. Update the card in the billing portal and "
            "try again."
        ) from exc
    except stripe.StripeError as exc:
        raise stripe_failed(exc, operation) from exc


def mirrored_data(subscription_id: str) -> dict[str, Any]:
    """A subscription as dj-stripe mirrored it ({} when unknown)."""
    if not subscription_id:
        return {}
    data = Subscription.objects.filter(id=subscription_id).values_list("stripe_data", flat=True)
    return data.first() or {}


def mirrored_status(subscription_id: str) -> str:
    """Status of a subscription as dj-stripe mirrored it ('' when unknown)."""
    # dj-stripe 2.11 keeps the status inside the raw object, not in a column.
    return mirrored_data(subscription_id).get("status") or ""


def member_has_live_subscription(member: Member) -> bool:
    """True when the member's own or their team's subscription still grants or owes access."""
    if mirrored_status(member.subscription_id) in LIVE_STATUSES:
        return True
    if member.team_id is not None and member.team.subscription_id:
        return mirrored_status(member.team.subscription_id) in LIVE_STATUSES
    return False


def plan_change_refusal(subscription_id: str) -> str:
    """Why the plan of this live subscription cannot change now ('' when it can).

    Only a paid-up plan changes (``active`` or ``trialing``): one with a payment problem is
    settled first, so a change never leaves a debt behind; one with a disputed payment waits
    for the dispute (its access is suspended, and a disputed charge cannot be refunded).
    """
    if mirrored_status(subscription_id) not in SWITCHABLE_STATUSES:
        return (
            "Your plan has a payment problem: update your payment method before changing your plan."
        )
    if Dispute.objects.filter(subscription_id=subscription_id, closed_at__isnull=True).exists():
        return "A payment of your plan is disputed: it can be changed once the dispute is closed."
    return ""


def individual_replaceable_by_company(member: Member) -> str:
    """The member's own subscription, which a company plan may replace ('' when none is live);
    refused while :func:`plan_change_refusal` says so."""
    if mirrored_status(member.subscription_id) not in LIVE_STATUSES:
        return ""
    refusal = plan_change_refusal(member.subscription_id)
    if refusal:
        raise CheckoutError(refusal)
    return member.subscription_id


def team_replaceable_by(member: Member) -> str:
    """The team subscription an individual plan may replace: the member's team is live, they
    are its primary owner and nobody else holds a seat ('' when the team is not live).

    Refused (with the reason) for anyone else on a live team: their own plan would leave the
    team paying for a seat nobody uses, or end the others' access.
    """
    team = member.team
    status = mirrored_status(team.subscription_id) if team is not None else ""
    if team is None or status not in LIVE_STATUSES:
        return ""
    if team.primary_owner_id != member.pk:
        raise CheckoutError("You already belong to a team.")
    if team_has_others(team, member):
        raise CheckoutError(
            "Others hold seats on your team: revoke their seats before moving to an "
            "individual plan."
        )
    refusal = plan_change_refusal(team.subscription_id)
    if refusal:
        raise CheckoutError(refusal)
    return team.subscription_id


def team_has_others(team: Team, member: Member) -> bool:
    return Member.objects.filter(team=team).exclude(pk=member.pk).exists()


def _ensure_customer(member: Member) -> str:
    """The member's own Stripe customer, created on first individual checkout (never at sign-up).

    Personal: it holds only this person's cards, invoices and subscriptions. A company plan
    never uses it (see :func:`_ensure_team_customer`).
    """
    if not member.stripe_customer_id:
        member.stripe_customer_id = _customer_create(
            owner=member, purchaser=member, email=member.user.email, metadata_key="member_id"
        )
        member.save(update_fields=["stripe_customer_id", "updated_at"])
    return member.stripe_customer_id


def _ensure_team_customer(team: Team, purchaser: Member) -> str:
    """The team's own Stripe customer: every owner opens its billing portal, so it must hold
    nothing of any one person's (their cards, invoices or other subscriptions)."""
    if not team.stripe_customer_id:
        team.stripe_customer_id = _customer_create(
            owner=team,
            purchaser=purchaser,
            email=purchaser.user.email,
            metadata_key="team_id",
            name=team.name,
        )
        team.save(update_fields=["stripe_customer_id"])
    return team.stripe_customer_id


def _customer_create(
    *, owner: Member | Team, purchaser: Member, email: str, metadata_key: str, **fields: str
) -> str:
    """Create the Stripe customer of a member or a team and audit it; returns its id."""
    prefix = "member" if isinstance(owner, Member) else "team"
    try:
        customer = stripe.Customer.create(
            email=email,
            metadata={metadata_key: str(owner.pk)},
            # Two quick clicks, a retried request or a rolled-back first attempt must not make
            # two customers; created_at keeps the key unique across database resets.
            idempotency_key=f"{prefix}-{owner.pk}-{int(owner.created_at.timestamp())}-customer",
            **fields,
        )
    except stripe.StripeError as exc:
        raise stripe_failed(exc, "customer.create") from exc
    audit_record(
        **audit_actor(purchaser, AuditActor.MEMBER),
        action=AuditAction.BILLING_CUSTOMER_CREATED,
        target=owner,
        details={"customer_id": customer.id},
    )
    return customer.id


def _lock(member: Member) -> Member:
    # Serialise checkout starts per member so the customer and pending team are made once.
    return (
        Member.objects.select_for_update(of=("self",))
        .select_related("user", "team")
        .get(pk=member.pk)
    )


def _tax_parameters(plan: Plan) -> dict[str, Any]:
    """Stripe Tax on a Checkout Session when ``STRIPE_TAX_ENABLED`` is on; nothing otherwise
    (a deployment that has not turned it on sends exactly what it sent before).

    Checkout asks for the billing address and Stripe Tax adds tax for it; the subscription the
    session creates keeps ``automatic_tax`` for every later invoice. Our sessions always name
    an existing customer, so Checkout must be allowed to save what it collects onto that
    customer (``customer_update``): Stripe refuses automatic tax for a customer with no address
    unless ``customer_update[address]=auto``, and tax-id collection unless
    ``customer_update[name]=auto`` (the business name goes with the tax id). A company plan
    also collects the buyer's tax id (a VAT number), which becomes the team customer's and is
    printed on its invoices.
    """
    if not settings.STRIPE_TAX_ENABLED:
        return {}
    parameters: dict[str, Any] = {
        "automatic_tax": {"enabled": True},
        "billing_address_collection": "required",
        "customer_update": {"address": "auto", "name": "auto"},
    }
    if plan.kind == Plan.Kind.COMPANY:
        parameters["tax_id_collection"] = {"enabled": True}
    return parameters


def _session_create(
    *,
    customer_id: str,
    reference: str,
    line_items: list[dict[str, Any]],
    metadata: dict[str, str],
    cancel_path: str,
    option: PlanOption,
    purchaser: Member,
    target: Member | Team,
    replaces: str = "",
    details: dict[str, Any] | None = None,
) -> Any:
    """A subscription Checkout Session; the subscription carries the session's metadata, and
    the plan's free trial when it has one. Checkout asks for a promotion code when the plan
    allows one, and for what Stripe Tax needs when it is on (:func:`_tax_parameters`).

    ``replaces`` names the subscription this one takes over (a move between an individual and
    a company plan, ``billing.plan_change``): it is ended once this one is paid, and a member
    who already paid is not given a second free trial.

    The start is audited on ``target`` with what was chosen (and ``details``).
    """
    plan = option.plan
    if replaces:
        metadata = {**metadata, "replaces": replaces}
    subscription_data: dict[str, Any] = {"metadata": metadata}
    if plan.trial_days and not replaces:
        subscription_data["trial_period_days"] = plan.trial_days
    promotion = {"allow_promotion_codes": True} if plan.allow_promotion_codes else {}
    try:
        session = stripe.checkout.Session.create(
            mode="subscription",
            customer=customer_id,
            client_reference_id=reference,
            line_items=line_items,
            metadata=metadata,
            subscription_data=subscription_data,
            **promotion,
            **_tax_parameters(plan),
            success_url=_app_url("/dashboard/?checkout=success"),
            cancel_url=_app_url(cancel_path),
        )
    except stripe.StripeError as exc:
        raise stripe_failed(exc, "checkout.session.create") from exc
    audit_record(
        **audit_actor(purchaser, AuditActor.MEMBER),
        action=AuditAction.BILLING_CHECKOUT_STARTED,
        target=target,
        details={
            "plan_type": metadata["plan_type"],
            "session_id": session.id,
            **(details or {}),
            "plan_id": plan.pk,
            "prices": [price.id for price in option.prices.values()],
            **({"replaces": replaces} if replaces else {}),
        },
    )
    return session


@transaction.atomic
def checkout_individual_start(*, member: Member, price_id: str | None = None) -> str:
    """Create a Checkout Session for an individual plan at the chosen price (the first one
    offered when none is given); returns the URL to send the member to."""
    option = option_chosen(kind=Plan.Kind.INDIVIDUAL, key=price_id)
    member = _lock(member)
    if mirrored_status(member.subscription_id) in LIVE_STATUSES:
        raise CheckoutError(
            "You already have an active membership. Change its plan from your dashboard."
        )
    # A company plan its primary owner holds alone moves to the individual plan (it ends once
    # the individual plan is paid, its unused time refunded).
    replaces = team_replaceable_by(member)
    customer_id = _ensure_customer(member)
    session = _session_create(
        customer_id=customer_id,
        reference=f"member-{member.pk}",
        line_items=[{"price": option.price_id(SeatTier.INDIVIDUAL), "quantity": 1}],
        metadata={"plan_type": "individual", "member_id": str(member.pk)},
        cancel_path="/dashboard/?checkout=cancel",
        option=option,
        purchaser=member,
        target=member,
        replaces=replaces,
    )
    return session.url


def _pending_team(member: Member, company_name: str) -> Team:
    """Reuse the member's unpaid team from an abandoned checkout, or create one.

    The pending team has its own Stripe customer but no subscription id: billing events are
    matched by subscription id, and a retry after an abandoned checkout reuses the team (and its
    customer) instead of colliding with it.
    """
    team = (
        Team.objects.select_for_update()
        .filter(primary_owner=member, subscription_id__isnull=True, cancelled_at__isnull=True)
        .order_by("-created_at")
        .first()
    )
    if team is None:
        return Team.objects.create(name=company_name, primary_owner=member)
    if team.name != company_name:
        team.name = company_name
        team.save(update_fields=["name"])
    return team


@transaction.atomic
def checkout_company_start(
    *,
    member: Member,
    company_name: str,
    owner_seats: int,
    team_seats: int,
    price_id: str | None = None,
) -> str:
    """Create a Checkout Session for a company plan at the chosen option (``price_id`` is its
    owner-seat price; the first option offered when none is given): owner and team seats at
    that option's prices. Returns the URL to send the member to."""
    company_name = (company_name or "").strip()
    if not 3 <= len(company_name) <= 100:
        raise CheckoutError("The company name must be 3 to 100 characters long.")
    if owner_seats < 1 or team_seats < 0 or owner_seats + team_seats > 500:
        raise CheckoutError("Choose 1 or more owner seats, 0 or more team seats, 500 at most.")
    option = option_chosen(kind=Plan.Kind.COMPANY, key=price_id)
    member = _lock(member)
    if member.team_id is not None and member.team.subscription_id:
        raise CheckoutError("You already belong to a team.")
    # An individual plan that is paid up moves to the company plan (it ends once the company
    # plan is paid, its unused time refunded); one with a payment problem is settled first.
    replaces = individual_replaceable_by_company(member)
    team = _pending_team(member, company_name)
    customer_id = _ensure_team_customer(team, member)
    # Checkout rejects zero quantities; a tier added later gets its item on the first seat add.
    line_items = [
        {"price": price, "quantity": quantity}
        for price, quantity in (
            (option.price_id(SeatTier.OWNER), owner_seats),
            (option.price_id(SeatTier.TEAM), team_seats),
        )
        if quantity > 0
    ]
    session = _session_create(
        customer_id=customer_id,
        reference=f"team-{team.pk}",
        line_items=line_items,
        metadata={"plan_type": "company", "member_id": str(member.pk), "team_id": str(team.pk)},
        cancel_path="/company/?checkout=cancel",
        option=option,
        purchaser=member,
        target=team,
        replaces=replaces,
        details={"owner_seats": owner_seats, "team_seats": team_seats},
    )
    team.checkout_session_id = session.id
    team.save(update_fields=["checkout_session_id"])
    return session.url


@transaction.atomic
def billing_portal_start(*, member: Member, return_url: str) -> str:
    """A fresh Stripe billing-portal session (their URLs are short-lived, so one per click)."""
    member = Member.objects.select_related("user", "team").get(pk=member.pk)
    if member.team_id is not None and member.seat_tier != SeatTier.OWNER:
        raise CheckoutError("Billing for your seat is managed by your team's owners.")
    customer_id = member.stripe_customer_id
    if member.team_id is not None:
        customer_id = member.team.stripe_customer_id
        shared_with = (
            Member.objects.filter(stripe_customer_id=customer_id).exclude(pk=member.pk).first()
            if customer_id
            else None
        )
        if shared_with is not None:
            # A team from before teams had customers of their own bills through its purchaser's
            # personal customer: only they may see it until `team_customers_separate` has run.
            raise CheckoutError(
                "Your team's billing account is still the personal account of the owner who "
                "bought the plan; ask them, or an administrator, to separate it."
            )
    if not customer_id:
        raise CheckoutError("There is no billing account yet. Choose a plan first.")
    try:
        session = stripe.billing_portal.Session.create(customer=customer_id, return_url=return_url)
    except stripe.StripeError as exc:
        raise stripe_failed(exc, "billing_portal.session.create") from exc
    audit_record(
        **audit_actor(member, AuditActor.MEMBER),
        action=AuditAction.BILLING_PORTAL_OPENED,
        target=member,
        details={"customer_id": customer_id},
    )
    return session.url


@transaction.atomic
def seats_add(*, team: Team, tier: str, quantity: int, actor: Member | None = None) -> SeatChange:
    """Buy ``quantity`` more seats of ``tier`` now, invoiced at once with proration.

    The team's seat counts are not changed here: they follow Stripe's item quantities when
    ``customer.subscription.updated`` arrives, so a failed or reversed change never grants seats.
    """
    if not isinstance(quantity, int) or not 1 <= quantity <= SEAT_ADD_MAX:
        raise CheckoutError(f"Add between 1 and {SEAT_ADD_MAX} seats at a time.")
    if tier not in (SeatTier.OWNER, SeatTier.TEAM):
        raise CheckoutError("Choose owner seats or team seats.")
    # Serialise adds per team: two concurrent "+1"s must both count.
    team = Team.objects.select_for_update().get(pk=team.pk)
    if not team.subscription_id or team.cancelled_at is not None:
        raise CheckoutError("This team has no active subscription.")
    if mirrored_status(team.subscription_id) not in LIVE_STATUSES - {"unpaid"}:
        raise CheckoutError("Seats can only be added while the team's subscription is active.")
    with charged_now_or_unchanged(
        "subscription_item.update", refused="no seats were added", team_id=team.pk
    ):
        # Read the live items, not the mirror: the quantity must be Stripe's current one.
        items = list(
            stripe.SubscriptionItem.list(
                subscription=team.subscription_id, limit=100
            ).auto_paging_iter()
        )
        # The tier's item, whichever plan and interval its price belongs to.
        roles = price_roles()
        existing = next((i for i in items if roles.get(i.price.id) == tier), None)
        if existing is None:
            item = stripe.SubscriptionItem.create(
                subscription=team.subscription_id,
                # The same plan and interval as what the team pays for already.
                price=seat_price(price_ids=[i.price.id for i in items], tier=tier),
                quantity=quantity,
                **CHARGED_NOW,
            )
            previous = 0
        else:
            previous = existing.quantity or 0
            item = stripe.SubscriptionItem.modify(
                existing.id, quantity=previous + quantity, **CHARGED_NOW
            )
    change = SeatChange(
        tier=tier, previous_quantity=previous, new_quantity=item.quantity, item_id=item.id
    )
    audit_record(
        **audit_actor(actor, AuditActor.MEMBER),
        action=AuditAction.BILLING_SEATS_ADDED,
        target=team,
        details={
            "tier": tier,
            "added": quantity,
            "previous_quantity": previous,
            "new_quantity": item.quantity,
            "subscription_id": team.subscription_id,
        },
    )
    return change


# --- teams from before teams had customers of their own -------------------------------------


@dataclass(frozen=True)
class CustomerSeparation:
    team: Team
    customer_id: str
    purchaser: Member
    outcome: str  # "separated", "would separate" or "kept: …" (what needs a person)


def teams_sharing_a_personal_customer() -> list[tuple[Team, Member]]:
    """Paid teams whose Stripe customer is also some member's personal customer."""
    pairs = []
    teams = Team.objects.filter(subscription_id__isnull=False).exclude(stripe_customer_id="")
    for team in teams.order_by("pk"):
        member = Member.objects.filter(stripe_customer_id=team.stripe_customer_id).first()
        if member is not None:
            pairs.append((team, member))
    return pairs


@transaction.atomic
def team_customer_separate(*, team: Team, purchaser: Member, dry_run: bool) -> CustomerSeparation:
    """Give the team the customer its subscription lives on, and the purchaser a fresh start.

    Stripe cannot move a subscription to another customer, so the shared customer becomes the
    team's (renamed, its metadata naming the team) and the purchaser's personal pointer is
    cleared: their next individual checkout creates a personal customer of their own. A
    customer that also holds other subscriptions (any status) is kept as it is and reported,
    because opening it to every owner would show them that person's billing: those need a
    person (a new team subscription on a team customer, then cancelling the old one).
    """
    customer_id = team.stripe_customer_id
    try:
        others = [
            sub.id
            for sub in stripe.Subscription.list(
                customer=customer_id, status="all", limit=100
            ).auto_paging_iter()
            if sub.id != team.subscription_id
        ]
    except stripe.StripeError as exc:
        raise stripe_failed(exc, "subscription.list") from exc
    if others:
        outcome = f"kept: the customer also holds {', '.join(sorted(others))}"
    elif dry_run:
        outcome = "would separate"
    else:
        try:
            stripe.Customer.modify(
                customer_id,
                name=team.name,
                metadata={"team_id": str(team.pk), "member_id": ""},
            )
        except stripe.StripeError as exc:
            raise stripe_failed(exc, "customer.update") from exc
        Member.objects.filter(pk=purchaser.pk).update(stripe_customer_id="")
        audit_record(
            actor_type=AuditActor.SYSTEM,
            action=AuditAction.BILLING_TEAM_CUSTOMER_SEPARATED,
            target=team,
            details={"customer_id": customer_id, "purchaser_id": purchaser.pk},
            reason="one Stripe customer per team",
        )
        outcome = "separated"
    log.info(
        "team_customer_separation",
        team_id=team.pk,
        customer_id=customer_id,
        outcome=outcome,
        dry_run=dry_run,
    )
    return CustomerSeparation(team, customer_id, purchaser, outcome)
