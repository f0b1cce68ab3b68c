"""Members console: search, billing-state filters, detail sections; teams with seats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from djstripe.models import Subscription

from billing.models import FailureEpisode
from members.models import Invite, Member, Override, SeatTier
from ops.models import AuditLog, Notification
from tests import personas
from tests.gateway.console.pages import changelist
from tests.personas import LANCELOT

pytestmark = pytest.mark.django_db


def listed(client, **params) -> set[str]:
    response = client.get(changelist("members.member"), params)
    assert response.status_code == 200
    return {str(m) for m in response.context["cl"].result_list}


@pytest.fixture
def population():
    """One member per billing state, plus a team with seats."""
    now = timezone.now()
    active = personas.member("active", discord_id=LANCELOT, introduced_at=now)
    grace = personas.member("grace")
    FailureEpisode.objects.create(
        subscription_id=grace.subscription_id,
        opened_at=now - timedelta(hours=1),
        grace_ends_at=now + timedelta(hours=47),
    )
    debtor = personas.member("debtor", status="past_due")
    FailureEpisode.objects.create(
        subscription_id=debtor.subscription_id,
        opened_at=now - timedelta(days=5),
        grace_ends_at=now - timedelta(days=3),
        debtor_at=now - timedelta(days=3),
    )
    cancelled = personas.member("cancelled", status="canceled")
    cancelled.cancelled_at = now
    cancelled.save()
    personas.member("nothing", status=None)
    team = personas.company("Camelot Ltd")
    seat = personas.member("seat", status=None, team=team, seat_tier=SeatTier.TEAM)
    revoked = personas.member("revoked")
    Member.objects.filter(pk=revoked.pk).update(override=Override.REVOKED)
    return {"team": team, "seat": seat, "active": active}


def test_state_filters_put_each_member_in_the_right_bucket(admin_web, population):
    owner = str(population["team"].primary_owner)
    assert listed(admin_web, state="active") == {
        "active@example.com",
        "seat@example.com",
        owner,
        "revoked@example.com",
    }
    assert listed(admin_web, state="grace") == {"grace@example.com"}
    assert listed(admin_web, state="debtor") == {"debtor@example.com"}
    assert listed(admin_web, debtor="yes") == {"debtor@example.com"}
    assert listed(admin_web, state="cancelled") == {"cancelled@example.com"}
    assert listed(admin_web, state="none") == {"nothing@example.com"}
    assert "grace@example.com" in listed(admin_web, state="entitled")
    assert "debtor@example.com" not in listed(admin_web, state="entitled")


def test_team_seats_follow_the_team_subscription(admin_web, population):
    Subscription.objects.filter(id=population["team"].subscription_id).update(
        stripe_data={"id": population["team"].subscription_id, "status": "unpaid"}
    )
    assert "seat@example.com" in listed(admin_web, state="cancelled")


def test_other_filters(admin_web, population):
    assert listed(admin_web, linked="yes") == {"active@example.com"}
    assert listed(admin_web, introduced="yes") == {"active@example.com"}
    assert listed(admin_web, override__exact="revoked") == {"revoked@example.com"}
    assert listed(admin_web, seat_tier__exact="team") == {"seat@example.com"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("GRACE@example", {"grace@example.com"}),
        ("active", {"active@example.com"}),  # Discord username
        (LANCELOT, {"active@example.com"}),  # Discord id
        ("camelot", {"seat@example.com", "owner"}),  # company name
    ],
)
def test_search_by_email_discord_and_company(admin_web, population, query, expected):
    owner = str(population["team"].primary_owner)
    expected = {owner if e == "owner" else e for e in expected}
    assert listed(admin_web, q=query) == expected


def test_detail_page_shows_subscription_roles_audit_and_messages(admin_web):
    member = personas.member("lancelot", discord_id=LANCELOT, introduced_at=timezone.now())
    end = datetime(2030, 1, 31, 12, 0, tzinfo=UTC)
    sub = personas.subscription(member.subscription_id)
    sub.stripe_data = {
        "id": sub.id,
        "status": "active",
        "cancel_at_period_end": True,
        "items": {
            "data": [
                {
                    "price": {"id": "price_x", "nickname": "Council membership"},
                    "quantity": 1,
                    "current_period_end": int(end.timestamp()),
                }
            ]
        },
    }
    sub.save()
    Member.objects.filter(pk=member.pk).update(discord_roles=["squire"], role_sync_status="ok")
    AuditLog.objects.create(
        actor_type="staff",
        actor_label="root@example.com",
        action="member_access_revoked",
        target_type="member",
        target_id=str(member.pk),
        reason="Spam in the lobby",
    )
    Notification.objects.create(
        key="k1", channel="email", kind="welcome", recipient="lancelot@example.com", member=member
    )

    page = admin_web.get(reverse("admin:members_member_change", args=[member.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    for text in (
        "Council membership",
        "2030-01-31 12:00 UTC",
        "Cancels at period end",
        "Expected role (policy)",
        "lord",
        "Roles Discord last reported",
        "squire",
        "Spam in the lobby",
        "member_access_revoked",
        "welcome",
        "Revoke access",
        "Reset Discord claim",
    ):
        assert text in html, text
    assert 'name="_save"' not in html  # changes only through the audited actions


def test_team_page_shows_seats_used_and_masked_invite_tokens(admin_web):
    team = personas.company("Camelot Ltd", owner_seats=2, team_seats=3)
    personas.member("knight1", status=None, team=team, seat_tier=SeatTier.TEAM)
    token = "t" * 40 + "WXYZ"
    Invite.objects.create(team=team, tier=SeatTier.TEAM, token=token)

    listing = admin_web.get(changelist("members.team")).content.decode()
    assert "1 / 2" in listing and "1 / 3" in listing

    page = admin_web.get(reverse("admin:members_team_change", args=[team.pk])).content.decode()
    assert "…WXYZ" in page
    assert token not in page
    assert "knight1@example.com" in page
