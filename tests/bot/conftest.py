"""Personas and helpers for the bot suite."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.utils import timezone
from djstripe.models import Customer, Subscription

from members.models import Member, SeatTier, User

SQUIRE_DISCORD_ID = "700000000000000001"
INTRO_CHANNEL = "400000000000000001"


def make_member(
    *,
    discord_id: str | None,
    status: str = "active",
    seat_tier: str = SeatTier.INDIVIDUAL,
    introduced_at: datetime | None = None,
    name: str = "percival",
) -> Member:
    """A member paying through their own subscription with the given Stripe status."""
    user = User.objects.create_user(f"{name}@example.com", "correct horse battery")
    customer = Customer.objects.create(id=f"cus_{name}", stripe_data={"id": f"cus_{name}"})
    Subscription.objects.create(
        id=f"sub_{name}", customer=customer, stripe_data={"id": f"sub_{name}", "status": status}
    )
    return Member.objects.create(
        user=user,
        stripe_customer_id=customer.id,
        subscription_id=f"sub_{name}",
        seat_tier=seat_tier,
        discord_id=discord_id,
        discord_username=name,
        linked_at=timezone.now() if discord_id else None,
        introduced_at=introduced_at,
    )


@pytest.fixture
def squire(db) -> Member:
    """Paid, linked, not yet introduced: an individual member waiting at Squire."""
    return make_member(discord_id=SQUIRE_DISCORD_ID)
