"""Removal after the Debtor period with ``cancel_stripe_on_removal`` off: the subscription
stays ``past_due`` in Stripe, and that unpaid subscription must not let the member back in
(SPEC §2a, entitlement in one place); paying it later does."""

from __future__ import annotations

import pytest
from django.utils import timezone

from billing.entitlement import member_is_entitled
from billing.roles import member_expected_role
from tests.journeys import removed_keeping_subscription, sent_once

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_removed_member_is_kicked_and_not_entitled_by_the_unpaid_subscription(world):
    kay = removed_keeping_subscription(world, "kay@example.org", "kay")

    sent_once("removal", kay.discord_id)
    assert world.roles(kay) is None  # kicked, not left in the guild as Squire
    assert not member_is_entitled(kay, timezone.now())
    assert member_expected_role(kay, timezone.now()) is None

    # Stripe retries the open invoice and fails again: still nothing.
    world.stripe.state.fail_renewal(kay.subscription_id)
    world.deliver_new()
    kay.refresh_from_db()
    assert kay.cancelled_at is not None and not member_is_entitled(kay, timezone.now())


def test_paying_the_kept_subscription_later_lets_the_member_back_in(world):
    kay = removed_keeping_subscription(world, "kay@example.org", "kay")

    world.recover(kay.subscription_id)

    kay.refresh_from_db()
    assert world.stripe_status(kay.subscription_id) == "active"
    assert kay.cancelled_at is None and member_is_entitled(kay, timezone.now())
    assert member_expected_role(kay, timezone.now()) == "squire"  # the introduction is redone
