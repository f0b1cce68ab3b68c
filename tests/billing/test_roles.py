"""The role policy, as a table: every combination of the facts it decides on.

Whether the member is entitled (or a debtor) is a fact here, decided by
``billing.entitlement``; ``tests/billing/test_entitlement.py`` covers that rule.
"""

from __future__ import annotations

import itertools

import pytest

from billing.roles import RoleFacts, expected_role
from members.models import ManagedRole, Override, SeatTier

# (entitled, debtor): the outcomes of the entitlement rule the policy can be handed.
BILLING = [(True, False), (False, True), (False, False)]
TIERS = [SeatTier.INDIVIDUAL, SeatTier.OWNER, SeatTier.TEAM]
OVERRIDES = [
    (Override.NONE, ""),
    (Override.REVOKED, ""),
    (Override.FORCED, ManagedRole.KNIGHT),
    (Override.FORCED, ManagedRole.DEBTOR),
    (Override.FORCED, ""),  # forced without a role: ignored
]


def _expected(linked, entitled, debtor, introduced, tier, override, forced, intro_required):
    """The rules written out independently of the implementation's control flow."""
    if not linked or override == Override.REVOKED:
        return None
    if debtor:
        return ManagedRole.DEBTOR
    if not entitled:
        return None  # a forced role never grants access (SPEC §2a)
    if override == Override.FORCED and forced:
        return forced
    if intro_required and not introduced:
        return ManagedRole.SQUIRE
    return {
        SeatTier.OWNER: ManagedRole.LORD,
        SeatTier.TEAM: ManagedRole.KNIGHT,
        SeatTier.INDIVIDUAL: ManagedRole.LORD,  # INDIVIDUAL_ROLE default
    }[tier]


COMBINATIONS = list(
    itertools.product([True, False], BILLING, [True, False], TIERS, OVERRIDES, [True, False])
)


@pytest.mark.parametrize("linked,billing,introduced,tier,override,intro_required", COMBINATIONS)
def test_every_combination(linked, billing, introduced, tier, override, intro_required):
    facts = RoleFacts(
        linked=linked,
        entitled=billing[0],
        debtor=billing[1],
        introduced=introduced,
        seat_tier=tier,
        override=override[0],
        forced_role=override[1],
        introduction_required=intro_required,
    )
    want = _expected(linked, *billing, introduced, tier, override[0], override[1], intro_required)
    assert expected_role(facts) == want


def _facts(**changes):
    base = dict(
        linked=True, entitled=True, debtor=False, introduced=True, seat_tier=SeatTier.INDIVIDUAL
    )
    base.update(changes)
    return RoleFacts(**base)


@pytest.mark.parametrize(
    "facts,role",
    [
        (_facts(introduced=False), ManagedRole.SQUIRE),
        (_facts(seat_tier=SeatTier.TEAM), ManagedRole.KNIGHT),
        (_facts(seat_tier=SeatTier.OWNER), ManagedRole.LORD),
        (_facts(entitled=False, debtor=True), ManagedRole.DEBTOR),
        (_facts(entitled=False, debtor=True, introduced=False), ManagedRole.DEBTOR),
        (_facts(entitled=False), None),
        (_facts(entitled=False, override=Override.FORCED, forced_role="knight"), None),
        (_facts(override=Override.REVOKED), None),
        (_facts(linked=False), None),
    ],
)
def test_named_personas(facts, role):
    assert expected_role(facts) == role


def test_individual_role_is_configurable(settings):
    settings.INDIVIDUAL_ROLE = "knight"
    assert expected_role(_facts()) == ManagedRole.KNIGHT
    assert expected_role(_facts(seat_tier=SeatTier.OWNER)) == ManagedRole.LORD


def test_a_squire_in_debtor_recovers_as_squire():
    """v1 restored a stored "Knight" after recovery, skipping the introduction."""
    squire = _facts(introduced=False, entitled=False, debtor=True)
    assert expected_role(squire) == ManagedRole.DEBTOR
    assert expected_role(_facts(introduced=False)) == ManagedRole.SQUIRE
