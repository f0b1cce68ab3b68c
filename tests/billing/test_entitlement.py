"""One table of entitlement facts, run through every reader of the rule so none can drift.

Each row is a combination of the facts the rule decides on (subscription status, failure
episode, removal after Debtor, open dispute, complimentary membership) with the outcome written
out here independently of ``billing.entitlement``. All rows become real members in one
database; then the pure rule, the per-member reader, the bulk reader, the queryset annotation
(staff console), the dashboard counts, the role policy and a reconciliation run must all agree
with the table.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.entitlement import (
    Access,
    BillingState,
    EntitlementFacts,
    access,
    entitled_member_ids,
    member_access,
    member_is_entitled,
    with_entitlement,
)
from billing.models import ComplimentaryMembership, Dispute, FailureEpisode
from billing.roles import member_expected_role
from gateway.admin_site import members_by_state
from gateway.reconciliation import reconcile
from members.models import ManagedRole, Member, Override, SeatTier, Team, User
from tests import personas

NOW = timezone.now()
PAST = NOW - timedelta(days=1)
FUTURE = NOW + timedelta(days=1)

STATUSES = ["", "active", "trialing", "past_due", "canceled", "unpaid"]
EPISODES = [None, "grace", "debtor"]
COMPLIMENTARY = [None, "open", "until_future", "expired"]


def want_access(status, episode, removed, disputed, comp) -> str:
    """SPEC §2/§2a, written as a decision list."""
    if comp in ("open", "until_future"):
        return Access.ENTITLED
    if status not in ("active", "trialing", "past_due") or removed:
        return Access.NONE
    if disputed:
        return Access.SUSPENDED
    if episode == "debtor":
        return Access.DEBTOR
    return Access.ENTITLED


def want_state(status, episode, removed, disputed, comp) -> str:
    outcome = want_access(status, episode, removed, disputed, comp)
    paid = status in ("active", "trialing", "past_due") and not removed
    if outcome == Access.SUSPENDED:
        return BillingState.SUSPENDED
    if outcome == Access.DEBTOR:
        return BillingState.DEBTOR
    if outcome == Access.ENTITLED and paid:
        return BillingState.GRACE if episode else BillingState.ACTIVE  # payment failed
    if outcome == Access.ENTITLED:
        return BillingState.COMPLIMENTARY
    return BillingState.CANCELLED if status else BillingState.NONE


def want_role(outcome: str, forced: bool, team: bool) -> str | None:
    """For an introduced member; the forced role (Squire) only for an entitled one."""
    if outcome == Access.DEBTOR:
        return ManagedRole.DEBTOR
    if outcome != Access.ENTITLED:
        return None
    if forced:
        return ManagedRole.SQUIRE
    return ManagedRole.KNIGHT if team else ManagedRole.LORD


ROWS = list(itertools.product(STATUSES, EPISODES, [False, True], [False, True], COMPLIMENTARY))
# In the database, ``trialing`` and ``unpaid`` add nothing the pure rule's table does not prove
# (they behave as ``active`` and ``canceled``); leaving them out halves the run time.
DB_ROWS = [row for row in ROWS if row[0] not in ("trialing", "unpaid")]


def _facts(status, episode, removed, disputed, comp) -> EntitlementFacts:
    return EntitlementFacts(
        subscription_status=status,
        in_failure=episode is not None,
        debtor_at=PAST if episode == "debtor" else None,
        removed=removed,
        disputed=disputed,
        complimentary=comp is not None,
        complimentary_ends_at={"until_future": FUTURE, "expired": PAST}.get(comp or ""),
    )


@pytest.mark.parametrize("row", ROWS)
def test_the_pure_rule(row):
    assert access(_facts(*row), NOW) == want_access(*row)


def _member(n: int, status, episode, removed, disputed, comp, forced) -> Member:
    """Row ``n`` as a real member: a team seat on odd rows (the team's subscription decides),
    a forced Squire on every other pair of rows (it must never grant access)."""
    sub_id = f"sub_row{n}"
    if status:
        personas.subscription(sub_id, status)  # "" = a subscription id not mirrored (yet)
    team = None
    if n % 2:
        team = Team.objects.create(name=f"Team {n}", subscription_id=sub_id, team_seats=1)
    member = Member.objects.create(
        user=User.objects.create_user(f"row{n}@example.com", None),
        subscription_id="" if team else sub_id,
        team=team,
        seat_tier=SeatTier.TEAM if team else SeatTier.INDIVIDUAL,
        discord_id=str(800000000000000000 + n),
        linked_at=NOW,
        introduced_at=NOW,
        override=Override.FORCED if forced else Override.NONE,
        forced_role=ManagedRole.SQUIRE if forced else "",
    )
    if episode:
        FailureEpisode.objects.create(
            subscription_id=sub_id,
            opened_at=PAST - timedelta(days=3),
            grace_ends_at=PAST,
            debtor_at=PAST if episode == "debtor" else None,
        )
    if removed:
        FailureEpisode.objects.create(
            subscription_id=sub_id,
            opened_at=PAST - timedelta(days=60),
            grace_ends_at=PAST - timedelta(days=58),
            debtor_at=PAST - timedelta(days=58),
            closed_at=PAST - timedelta(days=28),
            close_reason=FailureEpisode.CloseReason.REMOVED,
        )
    if disputed:
        Dispute.objects.create(
            dispute_id=f"dp_row{n}", subscription_id=sub_id, status="needs_response", opened_at=PAST
        )
    if comp:
        ComplimentaryMembership.objects.create(
            member=member,
            reason="Speaker at the spring meetup",
            granted_at=PAST,
            ends_at={"until_future": FUTURE, "expired": PAST}.get(comp),
        )
    return member


@pytest.mark.django_db
def test_every_reader_agrees_with_the_table(stripe_server, discord, settings):
    settings.INDIVIDUAL_ROLE = "lord"
    members = {}
    for n, facts in enumerate(DB_ROWS):
        row = (*facts, (n // 2) % 2 == 1)
        members[n] = (_member(n, *row), row)
    now = timezone.now()
    loaded = Member.objects.select_related("team", "user")

    # The per-member reader and the role policy it feeds.
    for member, row in members.values():
        *facts, forced = row
        member = loaded.get(pk=member.pk)
        outcome = want_access(*facts)
        assert member_access(member, now) == outcome, row
        assert member_is_entitled(member, now) == (outcome == Access.ENTITLED), row
        want = want_role(outcome, forced, team=member.team_id is not None)
        assert member_expected_role(member, now) == want, row

    # The bulk reader (reminders, reconciliation).
    want_entitled = {
        m.pk for m, row in members.values() if want_access(*row[:-1]) == Access.ENTITLED
    }
    assert entitled_member_ids(loaded.all(), now) == want_entitled

    # The annotation (staff console filters) and the dashboard counts.
    annotated = {
        pk: (entitled, state)
        for pk, entitled, state in with_entitlement(Member.objects.all(), now).values_list(
            "pk", "entitled", "billing_state"
        )
    }
    for member, row in members.values():
        state = want_state(*row[:-1])
        assert annotated[member.pk] == (member.pk in want_entitled, state), row
    counts = Counter(want_state(*row[:-1]) for _m, row in members.values())
    assert members_by_state(now) == {state: counts[state] for state, _ in BillingState.CHOICES}

    # Reconciliation: nobody is in the guild, so every member with a role to hold is reported
    # with the role the policy expects (the subscriptions exist only in our mirror).
    run = reconcile(fix=False, dry_run=True, trigger="test", now=now)
    reported = {
        int(f["member_id"]): f["expected"]
        for f in run.findings
        if f["kind"] == "linked_not_in_guild"
    }
    roles = {
        m.pk: want_role(want_access(*row[:-1]), row[-1], team=m.team_id is not None)
        for m, row in members.values()
    }
    assert reported == {pk: role for pk, role in roles.items() if role}
