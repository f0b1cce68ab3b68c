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
    invoice: str  # the failed renewal that opened it
    opened_at: datetime
    debtor_at: datetime | None = None
    paid: bool = False  # Stripe shows that invoice (or a later one) paid


@dataclass
class Sub:
    """One Stripe subscription: Stripe's truth, and the failure episode the gateway keeps."""

    id: str
    holder: str  # the person (individual plan) or the team (company plan) it bills
    status: str = "active"  # active | past_due | canceled
    failing: bool = False  # the latest renewal invoice is open and unpaid
    open_invoice: str = ""  # that invoice, while failing
    cancel_at_period_end: bool = False
    episode: Episode | None = None
    cancelled_by_us: bool = False
    dispute: str = ""  # a dispute of one of its payments, open in Stripe
    dispute_lost: bool = False
    charge_disputed: bool = False  # its latest payment was disputed already
    # Open while an episode existed at any moment since the last check (dunning is allowed).
    dunning_allowed: bool = False
    replaced: bool = False  # its holder moved to another plan: refunded and cancelled by us

    @property
    def live(self) -> bool:
        return self.status != "canceled"


@dataclass
class Team:
    key: str
    sub: str
    primary: str  # the purchaser, the primary owner
    paid: dict[str, int]  # Stripe's seat quantities by tier ("owner", "team")
    ended: bool = False


@dataclass
class Person:
    name: str
    email: str  # empty for people who only ever claim seats (Discord-only accounts)
    discord_id: str
    signed_up: bool = False
    sub: str | None = None  # the individual subscription they hold, as the gateway sees it
    team: str | None = None  # the team whose seat they hold
    tier: str = ""  # "owner" or "team" while they hold a seat
    teams_ever: set[str] = field(default_factory=set)
    linked: bool = False
    in_guild: bool = False
    introduced: bool = False
    revoked: bool = False
    complimentary: bool = False  # staff granted a complimentary membership (§2a)
    complimentary_ends_at: datetime | None = None
    claimed_seq: int = 0  # when the seat they hold was claimed (or bought), in claim order
    # Messages that must exist in the outbox, by kind (email and DM counted apart).
    expected: Counter[str] = field(default_factory=Counter)


class Reference:
    def __init__(self, names: list[str]) -> None:
        self.people: dict[str, Person] = {}
        self.subs: dict[str, Sub] = {}
        self.teams: dict[str, Team] = {}
        self.names = names
        # What the gateway has recorded of each dispute it was told about: "open" or "closed".
        self.disputes_seen: dict[str, str] = {}

    # --- queries ------------------------------------------------------------------------

    def sub_of(self, person: Person) -> Sub | None:
        """The subscription that entitles the person: their own, or their team's."""
        if person.team:
            return self.subs[self.teams[person.team].sub]
        return self.subs[person.sub] if person.sub else None

    def seats(self, team: Team, tier: str) -> list[Person]:
        return [p for p in self.people.values() if p.team == team.key and p.tier == tier]

    def billed(self, sub: Sub) -> list[Person]:
        """Everyone a subscription entitles: the individual, or every seat of the team."""
        if sub.holder in self.teams:
            return [p for p in self.people.values() if p.team == sub.holder]
        person = self.people[sub.holder]
        return [person] if person.sub == sub.id else []

    @staticmethod
    def pays(person: Person) -> bool:
        """Individuals and owners get the billing detail; team seats a short notice (§2)."""
        return person.team is None or person.tier == "owner"

    def _tell(self, person: Person, kind: str, *, email: bool = True) -> None:
        if email and person.email:
            person.expected[f"{kind}:email"] += 1
        if person.linked:
            person.expected[f"{kind}:dm"] += 1

    def entitled(self, person: Person) -> bool:
        """§2: the subscription is active/trialing/past_due and not in the Debtor phase; §2a:
        or an open complimentary membership."""
        if person.complimentary:
            return True
        sub = self.sub_of(person)
        return sub is not None and self.sub_entitles(sub)

    @staticmethod
    def sub_entitles(sub: Sub) -> bool:
        """Live, not disputed, not in the Debtor phase."""
        if not sub.live or sub.dispute:
            return False
        return sub.episode is None or sub.episode.debtor_at is None

    def expected_role(self, person: Person) -> str | None:
        """§2 ``expected_role``: none → Debtor → Squire → Lord (individual members)."""
        sub = self.sub_of(person)
        if not person.linked or person.revoked:
            return None
        if not person.complimentary:
            if sub is None or not sub.live or sub.dispute:
                return None  # §2a: a dispute suspends access (role removed, not kicked)
            if sub.episode is not None and sub.episode.debtor_at is not None:
                return "debtor"
        if not person.introduced:
            return "squire"
        return "knight" if person.tier == "team" else "lord"

    @staticmethod
    def may_change_plan(sub: Sub) -> bool:
        """A plan changes only while paid up: active, no failed renewal or episode, no dispute."""
        return sub.status == "active" and not (sub.failing or sub.episode or sub.dispute)

    def moved(self, person: Person, old: Sub, *, new: Sub, team: Team | None) -> None:
        """The person moved plans (to the company ``team``, or back to the individual plan
        ``new``): the old subscription is refunded and cancelled once the new one is paid, and
        access never stops (no farewell, no second welcome, the intro kept). A team left
        behind ends with nobody on it."""
        old.status, old.cancelled_by_us, old.replaced = "canceled", True, True
        old.episode = None
        if team is not None:
            person.sub, person.team, person.tier = None, team.key, "owner"
            person.teams_ever.add(team.key)
        else:
            self.teams[old.holder].ended = True
            person.sub, person.team, person.tier = new.id, None, ""

    def may_buy(self, person: Person) -> bool:
        sub = self.sub_of(person)
        return bool(person.email) and (sub is None or not sub.live)

    # --- what the gateway learns from Stripe (a delivered event, read against the truth) --

    # --- Stripe's truth changes -----------------------------------------------------------

    def renewed(self, sub: Sub) -> None:
        sub.charge_disputed = False  # a new payment, not disputed
        if sub.cancel_at_period_end:
            sub.status = "canceled"

    def renewal_failed(self, sub: Sub, invoice: str) -> None:
        sub.failing, sub.open_invoice, sub.status = True, invoice, "past_due"

    def paid_up(self, sub: Sub) -> None:
        """Every open invoice is paid (the card was fixed): the episode's invoice too."""
        sub.failing, sub.open_invoice, sub.status = False, "", "active"
        sub.charge_disputed = False
        if sub.episode is not None:
            sub.episode.paid = True

    def on_dispute_event(self, sub: Sub) -> list[Sub]:
        """§2a: a lost dispute ends the membership like a cancellation, and the subscription
        is cancelled in Stripe if still active. Returns what the gateway must have cancelled."""
        if not sub.dispute_lost or not sub.live:
            return []
        sub.status = "canceled"
        sub.cancelled_by_us = True
        self.on_ended(sub)
        return [sub]

    def on_dispute_seen(self, sub: Sub, dispute_id: str) -> None:
        """§2a: an event about a dispute makes the gateway re-read it. Seen open for the first
        time: access is suspended and the members hear it once. Seen closed as won after it was
        seen open: those whose access is back (not Debtors) hear it, once. First seen already
        closed: nobody's access was ever paused, so the members hear nothing (staff still do)."""
        seen = self.disputes_seen.get(dispute_id)
        is_open = sub.dispute == dispute_id
        if seen is None:
            self.disputes_seen[dispute_id] = "open" if is_open else "closed"
            if is_open:
                for person in self.billed(sub):
                    self._tell(person, "dispute_opened", email=self.pays(person))
        elif seen == "open" and not is_open:
            self.disputes_seen[dispute_id] = "closed"
            if not sub.dispute_lost:
                for person in self.billed(sub):
                    if self.entitled(person):  # not a Debtor: their access is back
                        self._tell(person, "dispute_won", email=self.pays(person))

    def on_payment_failed(self, sub: Sub, invoice: str, now: datetime) -> None:
        """§2a: an episode opens only for a renewal invoice that is still open and unpaid, of a
        past_due subscription; a repeat (Stripe's retry) never restarts it."""
        if sub.episode is not None or sub.status != "past_due" or invoice != sub.open_invoice:
            return
        sub.episode = Episode(invoice=invoice, opened_at=now)
        sub.dunning_allowed = True
        for person in self.billed(sub):
            if self.pays(person):
                self._tell(person, "payment_failed")
            else:
                self._tell(person, "payment_failed_member", email=False)

    def on_invoice_paid(self, sub: Sub) -> None:
        """§2a: the episode closes only when its invoice (or a later one) is paid. Paid, then
        cancelled before the gateway heard of either: the ending speaks, not a recovery."""
        if sub.episode is None or not sub.episode.paid or not sub.live:
            return
        kind = "recovered_debtor" if sub.episode.debtor_at else "recovered_grace"
        for person in self.billed(sub):
            if self.pays(person):
                self._tell(person, kind)
            else:
                self._tell(person, "recovered_member", email=False)
        sub.episode = None

    def on_ended(self, sub: Sub) -> None:
        """§2 "Cancellation": roles removed, kicked, cancelled; the intro is redone on return."""
        if sub.live:
            return
        sub.episode = None
        if sub.holder in self.teams:
            self.teams[sub.holder].ended = True
        for person in self.billed(sub):
            # §2a: ending a team detaches every member (the Discord link is kept).
            person.sub = None
            person.team = None
            person.tier = ""
            if not person.complimentary:
                person.in_guild = False
                person.introduced = False

    def complimentary_ended(self, person: Person) -> None:
        """Staff ended it, or its end date passed: the normal ending path, unless a
        subscription still carries the membership (entitles the person, or holds them in
        Debtor or a dispute)."""
        person.complimentary = False
        person.complimentary_ends_at = None
        sub = self.sub_of(person)
        if not self.entitled(person) and (sub is None or not sub.live):
            # A live subscription in Debtor or disputed still carries the membership.
            person.in_guild = False
            person.introduced = False

    def seats_reduced(self, team: Team, tier: str, paid: int) -> list[Person]:
        """§2a: Stripe's paid seats of a tier fell below the claimed ones: the most recently
        claimed seats beyond the paid count are released at once; never the primary owner."""
        team.paid[tier] = paid
        holders = sorted(self.seats(team, tier), key=lambda p: p.claimed_seq, reverse=True)
        excess = len(holders) - paid
        released = [p for p in holders if p.name != team.primary][: max(0, excess)]
        for person in released:
            self.seat_released(person)
        return released

    def seat_released(self, person: Person) -> None:
        """An owner revoked the seat: roles removed, kicked, the seat free at once — unless a
        complimentary membership still entitles the person (§2a: the role the usual rules
        give)."""
        person.team = None
        person.tier = ""
        if not person.complimentary:
            person.in_guild = False
            person.introduced = False

    # --- the billing tick (§2 "Billing failure" timings) --------------------------------

    def tick(self, now: datetime) -> list[Sub]:
        """Grace → Debtor → removal (the subscription is cancelled in Stripe, the default).
        Returns the subscriptions the gateway must have cancelled."""
        removed: list[Sub] = []
        for person in self.people.values():
            ends = person.complimentary_ends_at
            if person.complimentary and ends is not None and ends <= now:
                self.complimentary_ended(person)
        for sub in self.subs.values():
            episode = sub.episode
            if episode is None or not sub.live:
                continue
            due = (episode.debtor_at is None and now >= episode.opened_at + GRACE) or (
                episode.debtor_at is not None and now >= episode.debtor_at + DEBTOR_DAYS
            )
            if due and episode.paid:
                # Stripe is asked before anyone hears of Debtor or removal: paid means recovered.
                self.on_invoice_paid(sub)
            elif episode.debtor_at is None and now >= episode.opened_at + GRACE:
                episode.debtor_at = now
                for person in self.billed(sub):
                    self._tell(person, "debtor_entered", email=self.pays(person))
            elif episode.debtor_at is not None and now >= episode.debtor_at + DEBTOR_DAYS:
                for person in self.billed(sub):
                    if self.pays(person) and person.email:
                        person.expected["removal:email"] += 1
                sub.status = "canceled"
                sub.cancelled_by_us = True
                removed.append(sub)
                self.on_ended(sub)
        return removed
