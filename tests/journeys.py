"""Journeys through the whole gateway: a world of fake Stripe and fake Discord over HTTP.

Stripe is the fake Stripe over HTTP (purchases, failed renewals, recoveries and the
cancellation at removal happen there; its events are delivered to our webhook signed, as Stripe
would), Discord is the fake Discord over HTTP (roles, kicks and DMs are read back from it).

Time travel: the lifecycle takes ``now`` explicitly (``billing_tick(now=…)``, ``--at``), but the
role sync and outbox tasks read the real clock. So each timeline starts in the past: right after
the real failed-renewal webhook, :meth:`World.rewind` moves the episode's clock back so that T0
lies ``REWIND`` ago, and every simulated moment of a test is still before the real "now" the
tasks see.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.test import Client
from django.utils import timezone

from billing.models import FailureEpisode
from billing.tick import TickReport, billing_tick
from discordsync.tasks import sync_member_roles
from members.models import Member, Team
from ops.models import GatewayConfig, Notification
from tests.personas import ROLE_IDS, buyer, seat_member
from tests.providers import (
    deliver,
    pay_checkout,
    recorded_events,
    start_company_checkout,
    start_individual_checkout,
)

REWIND = timedelta(days=40)


class World:
    """One test's view of Stripe, Discord and our gateway."""

    def __init__(self, client: Client, stripe: Any, fake_discord: Any) -> None:
        self.client = client
        self.stripe = stripe
        self.discord = fake_discord
        self.seen: set[str] = set()

    # --- Stripe ---------------------------------------------------------------------------

    def deliver_new(self) -> int:
        """Deliver every event the fake Stripe emitted since last time, oldest first."""
        count = 0
        for event in recorded_events(self.stripe):
            if event["id"] not in self.seen:
                self.seen.add(event["id"])
                response = deliver(self.client, event)
                assert response.status_code == 200, response.content
                count += 1
        return count

    def fail_renewal(self, subscription_id: str) -> FailureEpisode:
        self.stripe.state.fail_renewal(subscription_id)
        self.deliver_new()
        return FailureEpisode.objects.get(subscription_id=subscription_id, closed_at__isnull=True)

    def recover(self, subscription_id: str) -> None:
        self.stripe.state.recover(subscription_id)
        self.deliver_new()

    def rewind(self, episode: FailureEpisode, by: timedelta = REWIND) -> datetime:
        """Move the episode's clock back by ``by``; returns the new T0 (see module doc)."""
        FailureEpisode.objects.filter(pk=episode.pk).update(
            opened_at=episode.opened_at - by, grace_ends_at=episode.grace_ends_at - by
        )
        episode.refresh_from_db()
        return episode.opened_at

    def stripe_status(self, subscription_id: str) -> str:
        return str(self.stripe.state.get_subscription(subscription_id)["status"])

    # --- Discord --------------------------------------------------------------------------

    def link(
        self,
        member: Member,
        username: str,
        *,
        role: str | None,
        introduced: bool = True,
        in_guild: bool = True,
    ) -> Member:
        """The member linked Discord (and joined with ``role``), as the claim flow leaves it."""
        user = self.discord.add_user(
            username=username, in_guild=in_guild, roles=[ROLE_IDS[role]] if role else []
        )
        now = timezone.now()
        Member.objects.filter(pk=member.pk).update(
            discord_id=user["id"],
            discord_username=username,
            linked_at=now,
            in_guild=in_guild,
            introduced_at=now if introduced else None,
        )
        member.refresh_from_db()
        return member

    def roles(self, member: Member) -> list[str] | None:
        """Managed role names the member holds in the fake guild; None when not in the guild."""
        held = self.discord.member_roles(member.discord_id)
        if held is None:
            return None
        return sorted(name for name, role_id in ROLE_IDS.items() if role_id in held)

    def dms(self, member: Member) -> list[str]:
        return [m["content"] for m in self.discord.dms_for(member.discord_id)]

    # --- gateway --------------------------------------------------------------------------

    def tick(self, at: datetime) -> TickReport:
        report = billing_tick(now=at)
        assert not report.errors, report.errors
        return report


def subscribe_individual(world: World, email: str) -> Member:
    """A member who bought the individual plan through Checkout (all events delivered)."""
    member = buyer(email)
    session = start_individual_checkout(member)
    pay_checkout(world.stripe, session.id, email=email)
    world.deliver_new()
    member.refresh_from_db()
    assert member.paid_at is not None and member.subscription_id
    return member


def removed_keeping_subscription(world: World, email: str, username: str) -> Member:
    """An individual Lord removed after the Debtor period with ``cancel_stripe_on_removal``
    off: kicked from the fake guild, the subscription left ``past_due`` in the fake Stripe."""
    config = GatewayConfig.load()
    config.cancel_stripe_on_removal = False
    config.save()
    member = world.link(subscribe_individual(world, email), username, role="lord")
    episode = world.fail_renewal(member.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + timedelta(hours=config.grace_hours, minutes=1))  # Debtor
    episode.refresh_from_db()
    world.tick(episode.removal_due_at)  # removal
    assert world.stripe_status(member.subscription_id) == "past_due"
    member.refresh_from_db()
    return member


def subscribe_company(
    world: World, email: str, name: str, *, owner_seats: int = 2, team_seats: int = 2
) -> tuple[Team, Member]:
    """A company plan bought through Checkout; returns the team and its primary owner."""
    purchaser = buyer(email)
    team = Team.objects.create(name=name)
    session = start_company_checkout(
        purchaser, team, owner_seats=owner_seats, team_seats=team_seats
    )
    pay_checkout(world.stripe, session.id, email=email)
    world.deliver_new()
    team.refresh_from_db()
    purchaser.refresh_from_db()
    assert team.subscription_id and team.primary_owner_id == purchaser.pk
    return team, purchaser


def seat(team: Team, tier: str, email: str | None) -> Member:
    """A seat claimed through an invite (an invite-created owner may have no email)."""
    return seat_member(team, tier, email)


def messages(kind: str, recipient: str | None = None) -> list[Notification]:
    rows = Notification.objects.filter(kind=kind)
    if recipient is not None:
        rows = rows.filter(recipient=recipient)
    return list(rows.order_by("pk"))


def sent_once(kind: str, recipient: str | None) -> Notification:
    """Exactly one ``kind`` message to ``recipient`` exists in the outbox, and it went out."""
    assert recipient, "recipient must be set"
    rows = messages(kind, recipient)
    assert len(rows) == 1, f"{kind} to {recipient}: {len(rows)} rows"
    assert rows[0].status == Notification.Status.SENT, (rows[0].status, rows[0].last_error)
    return rows[0]


def never_sent(kind: str, recipient: str | None) -> None:
    assert recipient
    assert messages(kind, recipient) == [], f"unexpected {kind} to {recipient}"


def converge(member: Member) -> str:
    """Run the role sync task for a member whose roles were set up outside the gateway."""
    return sync_member_roles(member.pk)


class FlakyEmail(LocmemBackend):
    """The email provider at its boundary: refuses the first ``failures`` sends."""

    failures = 0
    calls = 0

    def send_messages(self, messages: Any) -> int:
        type(self).calls += 1
        if type(self).calls <= type(self).failures:
            raise ConnectionError("provider unavailable")
        return super().send_messages(messages)
