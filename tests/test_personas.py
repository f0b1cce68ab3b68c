"""Each persona is what its name says: the entitlement rule and the role policy agree."""

from __future__ import annotations

import pytest
from django.utils import timezone

from billing.entitlement import Access, member_access
from billing.roles import member_expected_role
from members.models import ManagedRole, Member, SeatTier
from tests import personas
from tests.personas import ARTHUR, GUINEVERE, LANCELOT

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _individuals_are_lords(settings) -> None:
    settings.INDIVIDUAL_ROLE = "lord"


def access_and_role(member: Member) -> tuple[str, str | None]:
    now = timezone.now()
    return member_access(member, now), member_expected_role(member, now)


def test_an_individual_lord() -> None:
    assert access_and_role(personas.lord()) == (Access.ENTITLED, ManagedRole.LORD)


def test_a_squire_whose_introduction_is_pending() -> None:
    assert access_and_role(personas.squire()) == (Access.ENTITLED, ManagedRole.SQUIRE)


def test_a_debtor_past_grace() -> None:
    debtor = personas.debtor(discord_id=LANCELOT)
    assert access_and_role(debtor) == (Access.DEBTOR, ManagedRole.DEBTOR)


def test_a_removed_member_has_no_access() -> None:
    removed = personas.removed(discord_id=LANCELOT)
    assert access_and_role(removed) == (Access.NONE, None)


def test_a_complimentary_member_needs_no_subscription() -> None:
    guest = personas.complimentary(discord_id=LANCELOT, introduced_at=timezone.now())
    assert guest.subscription_id == ""
    assert access_and_role(guest) == (Access.ENTITLED, ManagedRole.LORD)


def test_a_company_owner_with_two_seats_claimed() -> None:
    owner = personas.company_owner()
    team = owner.team
    assert owner.seat_tier == SeatTier.OWNER and team.primary_owner == owner
    seats = team.members.filter(seat_tier=SeatTier.TEAM)
    assert seats.count() == 2
    assert all(member_access(seat, timezone.now()) == Access.ENTITLED for seat in seats)


def test_a_seat_member_and_a_discord_only_seat() -> None:
    team = personas.company("Orkney Ltd")
    seat = personas.seat_member(team, email="kay@example.com")
    Member.objects.filter(pk=seat.pk).update(discord_id=ARTHUR, introduced_at=timezone.now())
    seat.refresh_from_db()
    assert access_and_role(seat) == (Access.ENTITLED, ManagedRole.KNIGHT)
    discord_only = personas.discord_only_seat(team, discord_id=GUINEVERE)
    assert discord_only.user.email is None and not discord_only.user.has_usable_password()
    assert access_and_role(discord_only) == (Access.ENTITLED, ManagedRole.SQUIRE)


def test_a_staff_user_is_in_the_support_group() -> None:
    staff = personas.staff_user()
    assert staff.is_staff and not staff.is_superuser
    assert list(staff.groups.values_list("name", flat=True)) == ["Support"]
