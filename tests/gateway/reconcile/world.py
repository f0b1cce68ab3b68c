"""A small world for reconciliation: the fake Stripe and the fake Discord over real HTTP, and
members mirrored into the database the way the webhook flow would leave them.

Personas: an individual Lord (introduced), a Squire (not introduced), a lapsed member, a
company team with an owner and a Knight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
import stripe
from django.conf import settings
from django.utils import timezone
from djstripe.models import Subscription

from fakes.stripe.catalogue import INDIVIDUAL_PRICE_ID, OWNER_SEAT_PRICE_ID, TEAM_SEAT_PRICE_ID
from members.models import Member, SeatTier, Team
from tests import personas
from tests.personas import ROLE_IDS

WRITE_METHODS = ("PUT", "PATCH", "DELETE", "POST")


@dataclass
class World:
    stripe: Any
    discord: Any
    next_discord: int = 700000000000000001

    # --- Stripe + mirror -------------------------------------------------------------------

    def subscription(self, *, items: list[tuple[str, int]] | None = None) -> str:
        """An active subscription in the fake, mirrored into dj-stripe's table."""
        customer = stripe.Customer.create(email="buyer@example.com")
        sub = stripe.Subscription.create(
            customer=customer.id,
            items=[{"price": p, "quantity": q} for p, q in items or [(INDIVIDUAL_PRICE_ID, 1)]],
        )
        self.mirror(sub.id)
        return str(sub.id)

    def mirror(self, sub_id: str) -> None:
        Subscription.sync_from_stripe_data(
            stripe.Subscription.retrieve(sub_id), api_key=settings.STRIPE_SECRET_KEY
        )

    def db_status(self, sub_id: str) -> str:
        return Subscription.objects.get(id=sub_id).stripe_data["status"]

    # --- people ----------------------------------------------------------------------------

    def discord_user(self, *, roles: tuple[str, ...] = (), in_guild: bool = True) -> str:
        user_id = str(self.next_discord)
        self.next_discord += 1
        self.discord.add_user(
            id=user_id, username=f"u{user_id[-4:]}", in_guild=in_guild, roles=list(roles)
        )
        return user_id

    def member(
        self,
        name: str,
        *,
        holds: tuple[str, ...] = (),
        introduced: bool = True,
        sub_id: str | None = None,
        team: Team | None = None,
        tier: str = SeatTier.INDIVIDUAL,
        linked: bool = True,
        in_guild: bool = True,
    ) -> Member:
        """A paying member whose Discord account holds ``holds`` (role names)."""
        if team is None and sub_id is None:
            sub_id = self.subscription()
        discord_id = None
        if linked:
            discord_id = self.discord_user(
                roles=tuple(ROLE_IDS[r] for r in holds), in_guild=in_guild
            )
        now = timezone.now()
        return personas.member(
            name,
            status=None,
            team=team,
            seat_tier=tier,
            discord_id=discord_id,
            introduced_at=now if introduced else None,
            subscription_id="" if team else sub_id or "",
            discord_username=name,
            linked_at=now if linked else None,
            in_guild=in_guild and linked,
            paid_at=now,
        )

    def team(self, *, owner_seats: int, team_seats: int) -> Team:
        items = [(OWNER_SEAT_PRICE_ID, owner_seats), (TEAM_SEAT_PRICE_ID, team_seats)]
        sub_id = self.subscription(items=[i for i in items if i[1]])
        return Team.objects.create(
            name="Camelot Ltd",
            subscription_id=sub_id,
            owner_seats=owner_seats,
            team_seats=team_seats,
        )

    def roles_of(self, member_or_id: Member | str) -> set[str]:
        discord_id = member_or_id if isinstance(member_or_id, str) else member_or_id.discord_id
        held = set(self.discord.member_roles(discord_id) or [])
        return {name for name, role_id in ROLE_IDS.items() if role_id in held}

    # --- request logs ----------------------------------------------------------------------

    def clear_logs(self) -> None:
        self.discord.clear_requests()
        requests.post(f"{self.stripe.url}/_control/requests/clear", timeout=5)

    def stripe_requests(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.stripe.url}/_control/requests", timeout=5).json()["requests"]

    def discord_role_writes(self) -> list[dict[str, Any]]:
        """Writes to guild members (roles, kicks) — what a report-only run must never make."""
        return [
            r for r in self.discord.requests(path_prefix="/guilds/") if r["method"] in WRITE_METHODS
        ]
