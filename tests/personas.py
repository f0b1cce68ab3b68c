"""The people of the tests, built on the project's real models.

Every suite asks for members by what they are in the domain — an individual Lord, a company
owner with two seats claimed, a Squire whose introduction is pending, a Debtor — and gets the
rows the gateway itself would have left behind: the subscription mirrored in dj-stripe's table,
the failure episode, the complimentary membership, the claimed seat. Keyword options cover what
a suite needs to vary; nothing here calls Stripe or Discord except :func:`buyer`, who signs up
against the fake Stripe over HTTP.

Names are the Round Table's: ``member("percival")`` is percival@example.com.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from typing import Any

from django.test import Client
from django.utils import timezone
from djstripe.models import Customer, Subscription

from billing.models import ComplimentaryMembership, FailureEpisode
from fakes.discord import seed as fake_discord_seed
from members.models import Member, SeatTier, Team, User

# The password of every persona (and of the members who sign up through the pages).
PASSWORD = "correct horse battery"
SIGNUP_PASSWORD = "correct horse battery staple"
STAFF_PASSWORD = "a long staff passphrase 42"

# Discord accounts of the fake Discord's seed.
ARTHUR = fake_discord_seed.ARTHUR_ID  # not in the guild; the fake's default OAuth user
GUINEVERE = fake_discord_seed.GUINEVERE_ID  # not in the guild
LANCELOT = fake_discord_seed.LANCELOT_ID  # in the guild, no managed role
SQUIRE_DISCORD_ID = "700000000000000001"  # a linked member the bot's tests watch

# The fake guild's managed roles, as DISCORD_ROLE_IDS names them.
ROLE_IDS = {
    "squire": fake_discord_seed.ROLE_SQUIRE_ID,
    "knight": fake_discord_seed.ROLE_KNIGHT_ID,
    "lord": fake_discord_seed.ROLE_LORD_ID,
    "debtor": fake_discord_seed.ROLE_DEBTOR_ID,
}

# The data migration that creates the staff groups (run by hand under ``--nomigrations``).
STAFF_GROUPS_MIGRATION = "ops.migrations.0003_staff_groups_and_feature_flags"
# The data migration that imports the price settings as the first plan catalogue.
CATALOGUE_MIGRATION = "billing.migrations.0009_catalogue_from_price_settings"


# --- subscriptions, as the webhook flow mirrors them -----------------------------------------


def subscription(sub_id: str, status: str = "active") -> Subscription:
    """A Stripe subscription mirrored into dj-stripe's table with ``status``."""
    customer, _ = Customer.objects.get_or_create(
        id=f"cus_{sub_id}", defaults={"stripe_data": {"id": f"cus_{sub_id}"}}
    )
    sub, _ = Subscription.objects.update_or_create(
        id=sub_id,
        defaults={"customer": customer, "stripe_data": {"id": sub_id, "status": status}},
    )
    return sub


def set_status(sub_id: str, status: str) -> None:
    """Stripe changed the subscription's status (as the next webhook would mirror it)."""
    Subscription.objects.filter(id=sub_id).update(stripe_data={"id": sub_id, "status": status})


# --- members --------------------------------------------------------------------------------


def member(
    name: str,
    *,
    status: str | None = "active",
    discord_id: str | None = None,
    introduced_at: datetime | None = None,
    team: Team | None = None,
    seat_tier: str = SeatTier.INDIVIDUAL,
    password: str | None = PASSWORD,
    **fields: Any,
) -> Member:
    """An established member: an individual subscriber (own subscription in ``status``; none
    with ``status=None``) or, with ``team``, a seat of that team. Linked to Discord when
    ``discord_id`` is given; ``fields`` set any other column of the member."""
    # Established: the email was proven (the sensitive pages wait for that).
    user = User.objects.create_user(
        f"{name}@example.com", password, email_verified_at=timezone.now()
    )
    sub_id = ""
    if team is None and status is not None:
        sub_id = f"sub_{name}"
        subscription(sub_id, status)
    values: dict[str, Any] = {
        "subscription_id": sub_id,
        "team": team,
        "seat_tier": seat_tier,
        "discord_id": discord_id,
        "discord_username": name if discord_id else "",
        "linked_at": timezone.now() if discord_id else None,
        "introduced_at": introduced_at,
    }
    values.update(fields)
    return Member.objects.create(user=user, **values)


def lord(name: str = "percival", *, discord_id: str | None = LANCELOT, **options: Any) -> Member:
    """An individual Lord: paying, linked and introduced."""
    return member(name, discord_id=discord_id, introduced_at=timezone.now(), **options)


def squire(
    name: str = "percival", *, discord_id: str | None = SQUIRE_DISCORD_ID, **options: Any
) -> Member:
    """A Squire in grace: paid and linked, the introduction still pending."""
    return member(name, discord_id=discord_id, **options)


def _failed_renewal(
    name: str, *, days_ago: int, now: datetime | None, options: dict[str, Any], **episode: Any
) -> Member:
    """A paying, introduced member whose renewal failed ``days_ago`` (seven days of grace)."""
    now = now or timezone.now()
    opened = now - timedelta(days=days_ago)
    person = member(name, status="past_due", introduced_at=opened - timedelta(days=60), **options)
    FailureEpisode.objects.create(
        subscription_id=person.subscription_id,
        member=person,
        opened_at=opened,
        grace_ends_at=opened + timedelta(days=7),
        debtor_at=opened + timedelta(days=7),
        removal_due_at=opened + timedelta(days=14),
        **episode,
    )
    return person


def debtor(name: str = "mordred", *, now: datetime | None = None, **options: Any) -> Member:
    """A Debtor: the renewal failed, the grace period is over, the removal not yet due."""
    return _failed_renewal(name, days_ago=10, now=now, options=options)


def removed(name: str = "gaheris", *, now: datetime | None = None, **options: Any) -> Member:
    """A member removed after the Debtor period; Stripe still shows the subscription unpaid."""
    now = now or timezone.now()
    return _failed_renewal(
        name,
        days_ago=20,
        now=now,
        options=options,
        closed_at=now - timedelta(days=6),
        close_reason=FailureEpisode.CloseReason.REMOVED,
    )


def complimentary(
    name: str = "dagonet",
    *,
    ends_at: datetime | None = None,
    reason: str = "Founding patron",
    **options: Any,
) -> Member:
    """A guest of the house: no subscription, a complimentary membership granted by staff."""
    person = member(name, status=None, **options)
    ComplimentaryMembership.objects.create(
        member=person,
        reason=reason,
        granted_by="staff@example.com",
        granted_at=timezone.now(),
        ends_at=ends_at,
    )
    return person


# --- companies ------------------------------------------------------------------------------


def company(
    name: str = "Camelot Ltd",
    *,
    status: str = "active",
    owner_seats: int = 2,
    team_seats: int = 2,
    seats_claimed: int = 0,
) -> Team:
    """A company plan whose purchaser (the primary owner) holds one owner seat; the first
    ``seats_claimed`` team seats are claimed by members of the team."""
    sub_id = f"sub_team_{name.split()[0].lower()}"
    subscription(sub_id, status)
    team = Team.objects.create(
        name=name, subscription_id=sub_id, owner_seats=owner_seats, team_seats=team_seats
    )
    owner = member(f"owner-{team.pk}", status=None, team=team, seat_tier=SeatTier.OWNER)
    team.primary_owner = owner
    team.save(update_fields=["primary_owner"])
    for n in range(seats_claimed):
        member(f"knight{n + 1}-{team.pk}", status=None, team=team, seat_tier=SeatTier.TEAM)
    return team


def company_owner(name: str = "Camelot Ltd", *, seats_claimed: int = 2, **options: Any) -> Member:
    """The primary owner of a company plan with ``seats_claimed`` team seats taken."""
    owner = company(name, seats_claimed=seats_claimed, **options).primary_owner
    assert owner is not None
    return owner


def seat_member(
    team: Team, tier: str = SeatTier.TEAM, email: str | None = None, **fields: Any
) -> Member:
    """A seat claimed through an invite: the claim made the account (no password; an
    invite-created owner may have no email)."""
    user = User.objects.create_user(email, None)
    return Member.objects.create(
        user=user, team=team, seat_tier=tier, paid_at=timezone.now(), **fields
    )


def discord_only_seat(
    team: Team, *, discord_id: str, username: str = "kay", tier: str = SeatTier.TEAM
) -> Member:
    """A team seat claimed with a Discord account alone: no email, no password."""
    return seat_member(
        team,
        tier,
        None,
        discord_id=discord_id,
        discord_username=username,
        linked_at=timezone.now(),
    )


# --- buyers (the fake Stripe over HTTP) -----------------------------------------------------


def buyer(email: str) -> Member:
    """A signed-up member with a customer in the fake Stripe, no subscription yet (needs the
    ``stripe_server`` fixture)."""
    import stripe

    user = User.objects.create_user(email, PASSWORD, email_verified_at=timezone.now())
    customer = stripe.Customer.create(email=email)
    return Member.objects.create(user=user, stripe_customer_id=customer.id)


# --- staff ----------------------------------------------------------------------------------


def staff_groups() -> None:
    """The staff groups the data migration creates (created here under ``--nomigrations``)."""
    from django.apps import apps
    from django.contrib.auth.models import Group

    if not Group.objects.filter(name="Support").exists():
        importlib.import_module(STAFF_GROUPS_MIGRATION).create_groups_and_flags(apps, None)


def plan_catalogue() -> None:
    """The catalogue the data migration imports from the three price settings (imported here
    under ``--nomigrations`` and after a transactional test emptied the tables)."""
    from django.apps import apps

    importlib.import_module(CATALOGUE_MIGRATION).import_price_settings(apps, None)


def staff_user(email: str = "support@example.com", *, group: str = "Support") -> User:
    """A staff member in one of the staff groups (Support by default)."""
    from django.contrib.auth.models import Group

    staff_groups()
    user = User.objects.create_user(email, STAFF_PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


def superuser(email: str = "root@example.com") -> User:
    return User.objects.create_superuser(email, STAFF_PASSWORD)


def client_for(user: User) -> Client:
    """A browser in which ``user`` is logged in."""
    client = Client()
    client.force_login(user)
    return client
