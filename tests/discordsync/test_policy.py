"""The role policy, as a table: every combination of the facts it decides on."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from discordsync.policy import RoleFacts, expected_role, is_entitled
from members.models import ManagedRole, Override, SeatTier

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PAST = NOW - timedelta(hours=1)
FUTURE = NOW + timedelta(hours=1)

STATUSES = ["", "active", "trialing", "past_due", "canceled", "unpaid", "incomplete"]
DEBTOR_AT = [None, PAST, NOW, FUTURE]
TIERS = [SeatTier.INDIVIDUAL, SeatTier.OWNER, SeatTier.TEAM]
OVERRIDES = [
    (Override.NONE, ""),
    (Override.REVOKED, ""),
    (Override.FORCED, ManagedRole.KNIGHT),
    (Override.FORCED, ManagedRole.DEBTOR),
    (Override.FORCED, ""),  # forced without a role: ignored
]


def _expected(linked, status, debtor_at, introduced, tier, override, forced, intro_required):
    """The rules written out independently of the implementation's control flow."""
    if not linked or override == Override.REVOKED:
        return None
    if override == Override.FORCED and forced:
        return forced
    if status not in ("active", "trialing", "past_due"):
        return None
    if debtor_at is not None and debtor_at <= NOW:
        return ManagedRole.DEBTOR
    if intro_required and not introduced:
        return ManagedRole.SQUIRE
    return {
        SeatTier.OWNER: ManagedRole.LORD,
        SeatTier.TEAM: ManagedRole.KNIGHT,
        SeatTier.INDIVIDUAL: ManagedRole.LORD,  # INDIVIDUAL_ROLE default
    }[tier]


COMBINATIONS = list(
    itertools.product(
        [True, False], STATUSES, DEBTOR_AT, [True, False], TIERS, OVERRIDES, [True, False]
    )
)


@pytest.mark.parametrize(
    "linked,status,debtor_at,introduced,tier,override,intro_required", COMBINATIONS
)
def test_every_combination(linked, status, debtor_at, introduced, tier, override, intro_required):
    facts = RoleFacts(
        linked=linked,
        subscription_status=status,
        debtor_at=debtor_at,
        introduced=introduced,
        seat_tier=tier,
        override=override[0],
        forced_role=override[1],
        introduction_required=intro_required,
    )
    want = _expected(
        linked, status, debtor_at, introduced, tier, override[0], override[1], intro_required
    )
    assert expected_role(facts, NOW) == want


def _facts(**changes):
    base = dict(
        linked=True,
        subscription_status="active",
        debtor_at=None,
        introduced=True,
        seat_tier=SeatTier.INDIVIDUAL,
    )
    base.update(changes)
    return RoleFacts(**base)


@pytest.mark.parametrize(
    "facts,role",
    [
        (_facts(introduced=False), ManagedRole.SQUIRE),
        (_facts(seat_tier=SeatTier.TEAM), ManagedRole.KNIGHT),
        (_facts(seat_tier=SeatTier.OWNER), ManagedRole.LORD),
        (_facts(subscription_status="past_due"), ManagedRole.LORD),  # grace keeps access
        (_facts(subscription_status="past_due", debtor_at=PAST), ManagedRole.DEBTOR),
        (_facts(debtor_at=FUTURE, introduced=False), ManagedRole.SQUIRE),
        (_facts(subscription_status="canceled", debtor_at=PAST), None),
        (_facts(override=Override.REVOKED), None),
        (_facts(linked=False), None),
    ],
)
def test_named_personas(facts, role):
    assert expected_role(facts, NOW) == role


def test_individual_role_is_configurable(settings):
    settings.INDIVIDUAL_ROLE = "knight"
    assert expected_role(_facts(), NOW) == ManagedRole.KNIGHT
    assert expected_role(_facts(seat_tier=SeatTier.OWNER), NOW) == ManagedRole.LORD


def test_a_squire_in_debtor_recovers_as_squire():
    """v1 restored a stored "Knight" after recovery, skipping the introduction."""
    squire = _facts(introduced=False, debtor_at=PAST)
    assert expected_role(squire, NOW) == ManagedRole.DEBTOR
    recovered = _facts(introduced=False, debtor_at=None)
    assert expected_role(recovered, NOW) == ManagedRole.SQUIRE


def test_entitlement_for_claims():
    assert is_entitled(_facts(), NOW)
    assert is_entitled(_facts(subscription_status="trialing", debtor_at=FUTURE), NOW)
    assert not is_entitled(_facts(debtor_at=PAST), NOW)
    assert not is_entitled(_facts(subscription_status="canceled"), NOW)
    assert not is_entitled(_facts(subscription_status=""), NOW)
