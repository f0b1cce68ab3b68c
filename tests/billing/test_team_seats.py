"""Team seats: owner dashboard, invites, claims through the fake's OAuth, revocation."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from billing.teams import SeatError, seat_claim
from members.models import DiscordUser, Invite, Member, SeatTier
from ops.models import AuditLog, Notification
from tests import personas
from tests.personas import GUINEVERE, LANCELOT, ROLE_IDS
from tests.providers import authorize

pytestmark = pytest.mark.django_db

CALLBACK = "/oauth/discord/callback/"


@pytest.fixture
def team(db):
    """Camelot Ltd: 2 owner seats (one held by the primary owner) and 2 team seats."""
    return personas.company()


@pytest.fixture
def owner_client(client, team):
    client.force_login(team.primary_owner.user)
    return client


def _invite(owner_client, tier=SeatTier.TEAM, email=""):
    response = owner_client.post("/team/invites/", {"tier": tier, "email": email})
    assert response.status_code == 302
    return Invite.objects.latest("pk")


def _claim(client, invite, discord, user_id, capture):
    discord.set_oauth_user(user_id)
    assert client.get(f"/invite/{invite.token}/").status_code == 200
    response = client.post(f"/invite/{invite.token}/")
    assert response.status_code == 302
    back = authorize(response["Location"])
    with capture(execute=True):
        return client.get(CALLBACK, back)


def test_owner_dashboard_shows_seats(owner_client, team):
    personas.member("kay", status=None, team=team, seat_tier=SeatTier.TEAM)
    response = owner_client.get("/team/")
    assert response.status_code == 200
    seats = {s.tier: (s.used, s.paid) for s in response.context["seats"]}
    assert seats == {SeatTier.OWNER: (1, 2), SeatTier.TEAM: (1, 2)}
    assert b"Camelot Ltd" in response.content


def test_team_pages_are_for_owners_of_that_team_only(client, team):
    seat = personas.member("kay", status=None, team=team, seat_tier=SeatTier.TEAM)
    client.force_login(seat.user)
    assert client.get("/team/").status_code == 404
    other = personas.company("Orkney Ltd")
    client.force_login(other.primary_owner.user)
    # An owner of another team cannot touch this team's members or invites.
    assert client.post(f"/team/members/{seat.pk}/revoke/").status_code == 404
    invite = Invite.objects.create(team=team, tier=SeatTier.TEAM, token="t" * 43)
    assert client.post(f"/team/invites/{invite.pk}/revoke/").status_code == 404
    seat.refresh_from_db()
    assert seat.team_id == team.pk
    assert Invite.objects.get(pk=invite.pk).revoked_at is None


def test_invite_with_email_queues_the_seat_invite(owner_client, team):
    invite = _invite(owner_client, email="Kay@Example.com")
    assert len(invite.token) >= 43
    note = Notification.objects.get(kind="seat_invite")
    assert note.channel == "email" and note.recipient == "kay@example.com"
    assert note.context["link"].endswith(f"/invite/{invite.token}/")
    assert AuditLog.objects.filter(action="invite_created").exists()


def test_invite_emails_are_limited_per_team_per_day(owner_client, team, settings):
    settings.TEAM_INVITE_EMAILS_PER_DAY = 3
    for n in range(3):
        _invite(owner_client, email=f"guest{n}@example.org")

    refused = owner_client.post(
        "/team/invites/", {"tier": SeatTier.TEAM, "email": "victim@example.org"}, follow=True
    )

    assert b"3 invite emails in the last 24 hours" in refused.content
    assert not Invite.objects.filter(email="victim@example.org").exists()
    assert Notification.objects.filter(kind="seat_invite").count() == 3
    # A link to share by hand sends nothing and stays possible.
    assert _invite(owner_client).email == ""
    # The window slides: a day later the owner may email invites again.
    Invite.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert _invite(owner_client, email="victim@example.org").email == "victim@example.org"


def test_invite_refused_when_the_tier_is_full(owner_client, team):
    for name in ("kay", "bedivere"):
        personas.member(name, status=None, team=team, seat_tier=SeatTier.TEAM)
    response = owner_client.post("/team/invites/", {"tier": SeatTier.TEAM}, follow=True)
    assert b"are taken" in response.content
    assert not Invite.objects.exists()


def test_invite_claim_happy_path(
    owner_client, client, discord, team, django_capture_on_commit_callbacks
):
    invite = _invite(owner_client)
    client.logout()
    response = _claim(client, invite, discord, GUINEVERE, django_capture_on_commit_callbacks)

    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    seat = Member.objects.get(discord_id=GUINEVERE)
    assert seat.team_id == team.pk and seat.seat_tier == SeatTier.TEAM
    assert not seat.user.has_usable_password()
    assert int(client.session["_auth_user_id"]) == seat.user.pk
    assert discord.member_roles(GUINEVERE) == [ROLE_IDS["squire"]]
    invite.refresh_from_db()
    assert invite.last_claimed_by_id == seat.pk
    assert AuditLog.objects.filter(action="seat_claimed", target_id=str(seat.pk)).exists()


def test_invite_refused_after_the_team_subscription_is_cancelled(
    owner_client, client, discord, team, django_capture_on_commit_callbacks
):
    invite = _invite(owner_client)
    personas.set_status(team.subscription_id, "canceled")
    client.logout()
    response = _claim(client, invite, discord, GUINEVERE, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert b"not active" in response.content
    assert not Member.objects.filter(discord_id=GUINEVERE).exists()
    assert discord.member_roles(GUINEVERE) is None


def test_individual_subscriber_cannot_take_a_seat(
    owner_client, client, discord, team, django_capture_on_commit_callbacks
):
    personas.member("guinevere", discord_id=GUINEVERE)
    invite = _invite(owner_client)
    client.logout()
    response = _claim(client, invite, discord, GUINEVERE, django_capture_on_commit_callbacks)
    assert response.status_code == 400 and b"own membership" in response.content
    assert Member.objects.get(discord_id=GUINEVERE).team_id is None


def test_revoked_invite_is_not_usable(owner_client, client, team):
    invite = _invite(owner_client)
    owner_client.post(f"/team/invites/{invite.pk}/revoke/")
    client.logout()
    assert client.get(f"/invite/{invite.token}/").status_code == 404


def test_seat_claims_stop_at_paid_seats(team):
    invite = Invite.objects.create(team=team, tier=SeatTier.TEAM, token="a" * 43)
    now = timezone.now()
    seat_claim(
        invite_id=invite.pk, discord_user=DiscordUser("800000000000000001", "a", ""), now=now
    )
    seat_claim(
        invite_id=invite.pk, discord_user=DiscordUser("800000000000000002", "b", ""), now=now
    )
    with pytest.raises(SeatError, match="taken"):
        seat_claim(
            invite_id=invite.pk, discord_user=DiscordUser("800000000000000003", "c", ""), now=now
        )
    assert Member.objects.filter(team=team, seat_tier=SeatTier.TEAM).count() == 2


def test_seat_revoke(owner_client, discord, team, django_capture_on_commit_callbacks):
    seat = personas.member(
        "lancelot", status=None, discord_id=LANCELOT, team=team, seat_tier=SeatTier.TEAM
    )
    discord.set_member_roles(LANCELOT, [ROLE_IDS["knight"]])

    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(f"/team/members/{seat.pk}/revoke/")

    assert response.status_code == 302
    seat.refresh_from_db()
    assert seat.team_id is None and seat.introduced_at is None
    assert Member.objects.filter(team=team, seat_tier=SeatTier.TEAM).count() == 0  # seat freed
    assert discord.member_roles(LANCELOT) is None  # roles removed, kicked
    farewell = Notification.objects.get(kind="seat_revoked")
    assert farewell.channel == "dm" and farewell.recipient == LANCELOT
    assert AuditLog.objects.filter(action="seat_revoked", target_id=str(seat.pk)).exists()


def test_owner_cannot_revoke_self_and_primary_owner_is_protected(client, team):
    second = personas.member("gareth", status=None, team=team, seat_tier=SeatTier.OWNER)
    client.force_login(second.user)
    response = client.post(f"/team/members/{second.pk}/revoke/", follow=True)
    assert b"your own seat" in response.content
    response = client.post(f"/team/members/{team.primary_owner_id}/revoke/", follow=True)
    assert b"primary owner" in response.content
    assert Member.objects.filter(team=team, seat_tier=SeatTier.OWNER).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_exceed_paid_seats(discord):
    if connection.vendor != "postgresql":
        pytest.skip(f"needs PostgreSQL (DATABASE_URL); running on {connection.vendor}")
    team = personas.company("Lyonesse Ltd", team_seats=3)
    invite = Invite.objects.create(team=team, tier=SeatTier.TEAM, token="c" * 43)
    threads_count = int(os.environ.get("SEAT_CLAIM_THREADS", "12"))
    barrier = threading.Barrier(threads_count)
    outcomes: list[str] = []

    def claim(i: int) -> None:
        try:
            barrier.wait()
            seat_claim(
                invite_id=invite.pk,
                discord_user=DiscordUser(f"81000000000000{i:04d}", f"u{i}", ""),
                now=timezone.now(),
            )
            outcomes.append("ok")
        except SeatError as exc:
            outcomes.append(f"refused: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes.count("ok") == 3, outcomes
    full = "refused: All seats of this kind are taken. Ask the team owner to add seats."
    assert outcomes.count(full) == threads_count - 3, outcomes
    assert Member.objects.filter(team=team, seat_tier=SeatTier.TEAM).count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_invite_emails_never_pass_the_daily_limit(discord, settings):
    if connection.vendor != "postgresql":
        pytest.skip(f"needs PostgreSQL (DATABASE_URL); running on {connection.vendor}")
    from billing.teams import invite_create

    settings.TEAM_INVITE_EMAILS_PER_DAY = 3
    team = personas.company("Lothian Ltd", team_seats=5)
    owner = team.primary_owner
    threads_count = 12
    barrier = threading.Barrier(threads_count)
    outcomes: list[str] = []

    def send(i: int) -> None:
        try:
            barrier.wait()
            invite_create(actor=owner, tier=SeatTier.TEAM, email=f"guest{i}@example.org")
            outcomes.append("ok")
        except SeatError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes.count("ok") == 3, outcomes
    assert outcomes.count("refused") == threads_count - 3, outcomes
    assert Notification.objects.filter(kind="seat_invite").count() == 3
