"""The reference model: what SPEC §2 and §2a say must hold, in plain Python.

It knows nothing of the gateway's code. It keeps Stripe's truth as the machine changes it
(status, whether the latest renewal invoice is open and unpaid, cancel at period end) and, from
the Stripe events the gateway has been handed, what the gateway must have concluded: who is a
member, which failure episodes are open and in which phase, who is in the guild and which
single managed role they must hold, and how many of each message must have gone out.

Decisions follow §2a "Truth, not events": an event only matters through the current truth.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

GRACE = timedelta(hours=48)
DEBTOR_DAYS = timedelta(days=30)

# Messages that only a member in an open failure episode may receive (§2 "Billing failure").
DUNNING_KINDS = frozenset(
    {
        "payment_failed",
        "payment_failed_member",
        "grace_warning",
        "debtor_entered",
        "debtor_reminder",
        "final_warning",
        "removal",
    }
)


@dataclass
class Episode:
    opened_at: datetime
    debtor_at: datetime | None = None


@dataclass
class Sub:
    """One Stripe subscription: Stripe's truth, and the failure episode the gateway keeps."""

    id: str
    holder: str  # the person (individual plan) who pays for it
    status: str = "active"  # active | past_due | canceled
    failing: bool = False  # the latest renewal invoice is open and unpaid
    cancel_at_period_end: bool = False
    episode: Episode | None = None
    cancelled_by_us: bool = False
    # Open while an episode existed at any moment since the last check (dunning is allowed).
    dunning_allowed: bool = False

    @property
    def live(self) -> bool:
        return self.status != "canceled"


@dataclass
class Person:
    name: str
    email: str
    discord_id: str
    signed_up: bool = False
    sub: str | None = None  # the individual subscription they hold, as the gateway sees it
    linked: bool = False
    in_guild: bool = False
    introduced: bool = False
    revoked: bool = False
    # Messages that must exist in the outbox, by kind (email and DM counted apart).
    expected: Counter[str] = field(default_factory=Counter)


class Reference:
    def __init__(self, names: list[str]) -> None:
        self.people: dict[str, Person] = {}
        self.subs: dict[str, Sub] = {}
        self.names = names

    # --- queries ------------------------------------------------------------------------

    def sub_of(self, person: Person) -> Sub | None:
        return self.subs[person.sub] if person.sub else None

    def entitled(self, person: Person) -> bool:
        """§2: the subscription is active/trialing/past_due and not in the Debtor phase."""
        sub = self.sub_of(person)
        if sub is None or not sub.live:
            return False
        return sub.episode is None or sub.episode.debtor_at is None

    def expected_role(self, person: Person) -> str | None:
        """§2 ``expected_role``: none → Debtor → Squire → Lord (individual members)."""
        sub = self.sub_of(person)
        if not person.linked or person.revoked or sub is None or not sub.live:
            return None
        if sub.episode is not None and sub.episode.debtor_at is not None:
            return "debtor"
        if not person.introduced:
            return "squire"
        return "lord"

    def may_buy(self, person: Person) -> bool:
        sub = self.sub_of(person)
        return sub is None or not sub.live

    # --- what the gateway learns from Stripe (a delivered event, read against the truth) --

    def on_payment_failed(self, sub: Sub, now: datetime) -> None:
        """§2a: an episode opens only for an open unpaid renewal of a past_due subscription;
        a repeat (Stripe's retry) never restarts it."""
        if sub.episode is not None or not sub.failing or sub.status != "past_due":
            return
        sub.episode = Episode(opened_at=now)
        sub.dunning_allowed = True
        person = self.people[sub.holder]
        person.expected["payment_failed:email"] += 1
        if person.linked:
            person.expected["payment_failed:dm"] += 1

    def on_invoice_paid(self, sub: Sub) -> None:
        """§2a: the episode closes only when its invoice (or a later one) is paid."""
        if sub.episode is None or sub.failing:
            return
        person = self.people[sub.holder]
        kind = "recovered_debtor" if sub.episode.debtor_at else "recovered_grace"
        person.expected[f"{kind}:email"] += 1
        if person.linked:
            person.expected[f"{kind}:dm"] += 1
        sub.episode = None

    def on_ended(self, sub: Sub) -> None:
        """§2 "Cancellation": roles removed, kicked, cancelled; the intro is redone on return."""
        if sub.live:
            return
        person = self.people[sub.holder]
        if person.sub != sub.id:
            return
        person.sub = None
        sub.episode = None
        person.in_guild = False
        person.introduced = False

    # --- the billing tick (§2 "Billing failure" timings) --------------------------------

    def tick(self, now: datetime, cancel_in_stripe: bool = True) -> list[Sub]:
        """Grace → Debtor → removal. Returns the subscriptions the gateway must cancel."""
        removed: list[Sub] = []
        for sub in self.subs.values():
            episode = sub.episode
            if episode is None or not sub.live:
                continue
            person = self.people[sub.holder]
            if episode.debtor_at is None and now >= episode.opened_at + GRACE:
                episode.debtor_at = now
                person.expected["debtor_entered:email"] += 1
                if person.linked:
                    person.expected["debtor_entered:dm"] += 1
            elif episode.debtor_at is not None and now >= episode.debtor_at + DEBTOR_DAYS:
                person.expected["removal:email"] += 1
                if cancel_in_stripe:
                    sub.status = "canceled"
                    sub.cancelled_by_us = True
                    removed.append(sub)
                    self.on_ended(sub)
        return removed
