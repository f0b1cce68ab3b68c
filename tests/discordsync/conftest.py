"""Personas and the fake Discord for the discordsync suite.

The fake runs once per session on a real port; each test starts from a fresh world
(`state.reset()`) and with the project's DISCORD_* settings pointing at it.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qs, urlparse

import requests
from django.utils import timezone
from djstripe.models import Customer, Subscription

from fakes.discord import seed as fake_seed
from members.models import Member, SeatTier, Team, User

ARTHUR = fake_seed.ARTHUR_ID  # not in the guild; the fake's default OAuth user
GUINEVERE = fake_seed.GUINEVERE_ID  # not in the guild
LANCELOT = fake_seed.LANCELOT_ID  # in the guild, no managed role


def subscription(sub_id: str, status: str = "active") -> Subscription:
    customer, _ = Customer.objects.get_or_create(
        id=f"cus_{sub_id}", defaults={"stripe_data": {"id": f"cus_{sub_id}"}}
    )
    sub, _ = Subscription.objects.update_or_create(
        id=sub_id,
        defaults={"customer": customer, "stripe_data": {"id": sub_id, "status": status}},
    )
    return sub


def set_status(sub_id: str, status: str) -> None:
    Subscription.objects.filter(id=sub_id).update(stripe_data={"id": sub_id, "status": status})


def make_member(
    name: str,
    *,
    status: str | None = "active",
    discord_id: str | None = None,
    introduced_at: datetime | None = None,
    team: Team | None = None,
    seat_tier: str = SeatTier.INDIVIDUAL,
    password: str | None = "correct horse battery",
) -> Member:
    """An individual subscriber (own subscription with `status`) or, with `team`, a seat."""
    # An established member: the email was proven (the sensitive pages wait for that).
    user = User.objects.create_user(
        f"{name}@example.com", password, email_verified_at=timezone.now()
    )
    sub_id = ""
    if team is None and status is not None:
        sub_id = f"sub_{name}"
        subscription(sub_id, status)
    return Member.objects.create(
        user=user,
        subscription_id=sub_id,
        team=team,
        seat_tier=seat_tier,
        discord_id=discord_id,
        discord_username=name if discord_id else "",
        linked_at=timezone.now() if discord_id else None,
        introduced_at=introduced_at,
    )


def make_team(
    name: str = "Camelot Ltd", *, status: str = "active", owner_seats: int = 2, team_seats: int = 2
) -> Team:
    """A company plan whose purchaser (the primary owner) holds one owner seat."""
    sub_id = f"sub_team_{name.split()[0].lower()}"
    subscription(sub_id, status)
    team = Team.objects.create(
        name=name, subscription_id=sub_id, owner_seats=owner_seats, team_seats=team_seats
    )
    owner = make_member(f"owner-{team.pk}", status=None, team=team, seat_tier=SeatTier.OWNER)
    team.primary_owner = owner
    team.save(update_fields=["primary_owner"])
    return team


def authorize(location: str) -> dict[str, str]:
    """Follow our redirect to the fake's authorize page over real HTTP; return the
    query Discord sends back to our callback (code and state, or error)."""
    response = requests.get(location, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    back = urlparse(response.headers["Location"])
    assert back.path == "/oauth/discord/callback/"
    return {k: v[0] for k, v in parse_qs(back.query).items()}
