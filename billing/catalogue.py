"""The plan catalogue: what the site sells, and what a Stripe price means once it is sold.

Staff keep the catalogue in the admin (``billing.Plan`` with its ``PlanPrice`` rows). Two
kinds of questions are answered here, and only here:

- *What can a member buy?* :func:`plans_offered` lists the visible plans with one
  :class:`PlanOption` per billing interval (an individual price, or an owner-seat and a
  team-seat price of the same interval); :func:`option_chosen` checks a submitted choice.
- *What does a subscription hold?* :func:`price_role` tells which role (``members.SeatTier``)
  a Stripe price plays, and :func:`seat_counts` counts a subscription's seats by role, for
  every price of every plan, visible, hidden, active or not: a price taken off sale still
  bills its subscribers.

Amounts and intervals come from dj-stripe's mirrored ``Price`` rows, filled by
:func:`prices_sync` (the admin's "Sync prices from Stripe").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import stripe
import structlog
from django.db import transaction
from djstripe.models import Price

from billing.models import Plan, PlanPrice
from members.models import SeatTier
from ops.errors import ServiceError
from ops.models import AuditAction
from ops.money import format_amount
from ops.services import audit_actor, audit_record

log = structlog.get_logger(__name__)

INTERVAL_ORDER = {"day": 0, "week": 1, "month": 2, "year": 3}
# The roles one option of a plan kind is made of.
OPTION_ROLES = {
    Plan.Kind.INDIVIDUAL: (SeatTier.INDIVIDUAL,),
    Plan.Kind.COMPANY: (SeatTier.OWNER, SeatTier.TEAM),
}
Interval = tuple[str, int]  # ("month", 1); ("", 0) while the price is not mirrored


class CatalogueError(ServiceError):
    """A plan or price that cannot be bought or saved; the message is safe to show."""


# --- prices as dj-stripe mirrored them -------------------------------------------------------


@dataclass(frozen=True)
class PriceFacts:
    """What the pages and the admin need of one mirrored Stripe price."""

    id: str
    product: str = ""
    amount: str = ""  # "" while the price is not mirrored
    interval: Interval = ("", 0)
    active: bool = False
    recurring: bool = False

    @property
    def per(self) -> str:
        """``month``, ``3 months``, ``year`` (``""`` when unknown)."""
        name, count = self.interval
        if not name:
            return ""
        return name if count == 1 else f"{count} {name}s"

    @property
    def label(self) -> str:
        """``Individual membership — $99.00 / month``, as staff pick prices in the admin."""
        if not self.amount:
            return f"{self.id} (not synced from Stripe yet)"
        per = f" / {self.per}" if self.per else ""
        state = "" if self.active else " (archived in Stripe)"
        return f"{self.product or self.id} — {self.amount}{per}{state}"


def _facts(row: Price) -> PriceFacts:
    data = row.stripe_data or {}
    recurring = data.get("recurring") or {}
    interval = (str(recurring.get("interval") or ""), int(recurring.get("interval_count") or 1))
    nickname = data.get("nickname") or ""
    product = row.product.name if row.product_id else ""
    return PriceFacts(
        id=row.id,
        product=f"{product} ({nickname})" if product and nickname else product or nickname,
        amount=format_amount(data.get("unit_amount"), data.get("currency") or row.currency),
        interval=interval if interval[0] else ("", 0),
        active=bool(row.active),
        recurring=bool(recurring),
    )


def prices_mirrored(ids: Iterable[str] | None = None) -> dict[str, PriceFacts]:
    """Mirrored prices by id (all of them, or those of ``ids``)."""
    rows = Price.objects.select_related("product")
    if ids is not None:
        rows = rows.filter(id__in=list(ids))
    return {row.id: _facts(row) for row in rows}


def price_choices(*, keep: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The prices staff may add to a plan: mirrored, active and recurring, labelled for
    people; ``keep`` adds prices a plan already has (even unmirrored or archived)."""
    keep = set(keep)
    facts = prices_mirrored()
    choices = [
        (f.id, f.label)
        for f in sorted(facts.values(), key=lambda f: (f.product, _interval_sort(f.interval)))
        if (f.active and f.recurring) or f.id in keep
    ]
    known = {price_id for price_id, _ in choices}
    choices += [(price_id, PriceFacts(price_id).label) for price_id in sorted(keep - known)]
    return choices


@transaction.atomic
def prices_sync(*, actor: Any) -> int:
    """Mirror every Stripe price (with its product) into dj-stripe; returns how many.

    Archived prices are read too, so a price archived in Stripe is shown as archived here
    instead of staying "active" in the mirror.
    """
    count = 0
    try:
        for data in stripe.Price.list(limit=100, expand=["data.product"]).auto_paging_iter():
            Price.sync_from_stripe_data(data)
            count += 1
    except stripe.StripeError as exc:
        log.warning("prices_sync_failed", error_type=type(exc).__name__)
        raise CatalogueError("Stripe could not be read; nothing was changed. Try again.") from exc
    audit_record(
        **audit_actor(actor),
        action=AuditAction.BILLING_CATALOGUE_PRICES_SYNCED,
        details={"prices": count},
    )
    return count


# --- what a subscription holds ---------------------------------------------------------------


def price_roles() -> dict[str, str]:
    """Every catalogue price id with its role (one small query; call it once per operation)."""
    return dict(PlanPrice.objects.values_list("stripe_price_id", "role"))


def price_role(price_id: str) -> str | None:
    """The role a Stripe price plays (``SeatTier`` value), or None outside the catalogue."""
    return PlanPrice.objects.filter(stripe_price_id=price_id).values_list("role", flat=True).first()


def _item_price_id(item: Any) -> str:
    price = item.get("price") or ""
    return str(price if isinstance(price, str) else price.get("id") or "")


def subscription_price_ids(stripe_data: Any) -> set[str]:
    """The ids of the prices a subscription's items are billed at."""
    return {_item_price_id(item) for item in (stripe_data.get("items") or {}).get("data") or []}


def seat_counts(stripe_data: Any, *, roles: dict[str, str] | None = None) -> dict[str, int]:
    """Seats a subscription pays for, by role: ``{"owner": 2, "team": 3}`` (zero when none).

    Quantities follow each item's price role, so any owner-seat price of any plan and interval
    counts as owner seats. ``roles`` (:func:`price_roles`) saves the query when counting many.
    """
    roles = price_roles() if roles is None else roles
    counts = {SeatTier.OWNER.value: 0, SeatTier.TEAM.value: 0}
    for item in (stripe_data.get("items") or {}).get("data") or []:
        role = roles.get(_item_price_id(item))
        if role in counts:
            counts[role] += int(item.get("quantity") or 0)
    return counts


# --- what a member can buy ----------------------------------------------------------------


@dataclass(frozen=True)
class PlanOption:
    """One way to buy a plan: its prices of one billing interval, by role."""

    plan: Plan
    interval: Interval
    prices: dict[str, PriceFacts]

    @property
    def key(self) -> str:
        """What the page submits: the id of the option's first price (individual or owner)."""
        return self.prices[OPTION_ROLES[self.plan.kind][0]].id

    @property
    def per(self) -> str:
        return PriceFacts("", interval=self.interval).per

    def price_id(self, role: str) -> str:
        return self.prices[role].id

    @property
    def label(self) -> str:
        """``$99.00 per month`` or ``$99.00 per owner seat and $49.00 per team seat, per year``."""
        per = f"per {self.per}" if self.per else ""
        if self.plan.kind == Plan.Kind.INDIVIDUAL:
            amount = self.prices[SeatTier.INDIVIDUAL].amount
            return f"{amount} {per}".strip() if amount else self.plan.name
        owner, team = self.prices[SeatTier.OWNER].amount, self.prices[SeatTier.TEAM].amount
        if not (owner and team):
            return f"{self.plan.name} {per}".strip()
        return f"{owner} per owner seat and {team} per team seat" + (f", {per}" if per else "")


@dataclass(frozen=True)
class PlanOffer:
    plan: Plan
    options: list[PlanOption] = field(default_factory=list)


def _interval_sort(interval: Interval) -> tuple[int, int]:
    return (INTERVAL_ORDER.get(interval[0], 9), interval[1])


def _by_interval(rows: Iterable[tuple[str, PriceFacts]]) -> dict[Interval, dict[str, PriceFacts]]:
    """Prices grouped by billing interval, one per role (the first given wins).

    A price not mirrored yet has no known interval: it completes every interval that lacks its
    role, so the catalogue imported from the price settings sells before its first sync, even
    when only some of its prices were mirrored (by a subscription that bills them).
    """
    groups: dict[Interval, dict[str, PriceFacts]] = {}
    unknown: dict[str, PriceFacts] = {}
    for role, price in rows:
        target = groups.setdefault(price.interval, {}) if price.interval[0] else unknown
        target.setdefault(role, price)
    if not groups:
        return {("", 0): unknown} if unknown else {}
    for prices in groups.values():
        for role, price in unknown.items():
            prices.setdefault(role, price)
    return groups


def _options(plan: Plan, rows: list[PlanPrice], facts: dict[str, PriceFacts]) -> list[PlanOption]:
    """The plan's options: its prices grouped by interval, where every role has one."""
    groups = _by_interval(
        (row.role, facts.get(row.stripe_price_id) or PriceFacts(row.stripe_price_id))
        for row in rows
    )
    roles = OPTION_ROLES.get(plan.kind, ())
    return [
        PlanOption(plan=plan, interval=interval, prices={role: prices[role] for role in roles})
        for interval, prices in sorted(groups.items(), key=lambda kv: _interval_sort(kv[0]))
        if roles and all(role in prices for role in roles)
    ]


def _offers(plans: Iterable[Plan], *, on_sale: bool) -> list[PlanOffer]:
    plans = list(plans)
    # Active prices first: of two prices of a role and interval, the one on sale counts.
    rows = PlanPrice.objects.filter(plan__in=plans).order_by("-active", "pk")
    if on_sale:
        rows = rows.filter(active=True)
    rows_by_plan: dict[int, list[PlanPrice]] = {}
    for row in rows:
        rows_by_plan.setdefault(row.plan_id, []).append(row)
    facts = prices_mirrored(row.stripe_price_id for row in rows)
    offers = [
        PlanOffer(plan, _options(plan, rows_by_plan.get(plan.pk, []), facts)) for plan in plans
    ]
    return [offer for offer in offers if offer.options]


def plans_offered(kind: str | None = None) -> list[PlanOffer]:
    """The visible plans (of ``kind``, or all) and their options on sale, in display order."""
    plans = Plan.objects.filter(visible=True)
    if kind:
        plans = plans.filter(kind=kind)
    return _offers(plans, on_sale=True)


def option_chosen(*, kind: str, key: str | None) -> PlanOption:
    """The option a member submitted (its :attr:`PlanOption.key`), or, with no choice, the
    first one offered. Anything not on sale — a hidden plan, an inactive price, a price of
    another kind of plan, a made-up id — is refused, and nothing is bought."""
    options = [option for offer in plans_offered(kind) for option in offer.options]
    if not options:
        raise CatalogueError("This plan is not available right now.")
    if not key:
        return options[0]
    for option in options:
        if option.key == key:
            return option
    raise CatalogueError("Choose one of the plans shown.")


def option_billed(price_ids: Iterable[str], *, kind: str | None = None) -> PlanOption | None:
    """The catalogue option a subscription billed at these prices belongs to (any plan of
    ``kind``, on sale or not); None when no plan holds them."""
    price_ids = set(price_ids)
    plans = Plan.objects.filter(prices__stripe_price_id__in=price_ids)
    if kind is not None:
        plans = plans.filter(kind=kind)
    for offer in _offers(plans.distinct(), on_sale=False):
        for option in offer.options:
            if price_ids & {price.id for price in option.prices.values()}:
                return option
    return None


def seat_price(*, price_ids: Iterable[str], tier: str) -> str:
    """The price of ``tier`` seats in the same plan and interval as a subscription's prices
    (``price_ids``): what a team is charged when it adds its first seat of a tier."""
    option = option_billed(price_ids, kind=Plan.Kind.COMPANY)
    if option is None:
        raise CatalogueError(
            "Your plan has no price for these seats. Please contact us to add seats."
        )
    return option.price_id(tier)


# --- staff editing a plan -------------------------------------------------------------------


def plan_prices_problems(kind: str, rows: Iterable[tuple[str, str, bool]]) -> list[str]:
    """Why a plan of ``kind`` with these ``(role, price id, active)`` rows cannot be saved.

    An individual plan has individual prices only; a company plan owner- and team-seat
    prices, and every interval it sells has one of each; one price per role and interval.
    """
    rows = list(rows)
    allowed = OPTION_ROLES.get(kind, ())
    facts = prices_mirrored(price_id for _, price_id, _ in rows)
    problems: list[str] = []
    wrong = sorted({role for role, _, _ in rows if role not in allowed})
    if wrong:
        names = ", ".join(SeatTier(role).label.lower() for role in wrong)
        problems.append(f"{kind.capitalize()} plans cannot have {names} prices.")
    active = [
        (role, facts.get(price_id) or PriceFacts(price_id)) for role, price_id, on in rows if on
    ]
    seen: set[tuple[str, Interval]] = set()
    for role, price in active:
        if price.interval[0] and (role, price.interval) in seen:
            label = SeatTier(role).label.lower()
            problems.append(f"Only one active {label} price can bill every {price.per}.")
        seen.add((role, price.interval))
    if kind == Plan.Kind.COMPANY:
        for interval, prices in _by_interval(active).items():
            missing = [SeatTier(role).label.lower() for role in allowed if role not in prices]
            if missing:
                per = PriceFacts("", interval=interval).per or "unsynced"
                problems.append(f"The {per} prices need a {' and a '.join(missing)} price too.")
    return problems
