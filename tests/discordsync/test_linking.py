"""Linking Discord (/claim/) and logging in with Discord, through the fake's OAuth pages.

Our redirect is followed with a real HTTP GET to the fake's authorize URL, which answers 302
to our callback with a code; the callback then runs through the Django test client, and our
server exchanges the code with the fake over HTTP.
"""

from __future__ import annotations

import time

import pytest

from discordsync.oauth import SESSION_KEY
from members.models import Member, RoleSyncStatus
from ops.models import AuditLog
from tests import personas
from tests.personas import ARTHUR, GUINEVERE, ROLE_IDS
from tests.providers import authorize

pytestmark = pytest.mark.django_db

CALLBACK = "/oauth/discord/callback/"


@pytest.fixture
def percival(db):
    """An individual member who has paid and not linked Discord yet."""
    return personas.member("percival")


def _logged_in(client, member):
    client.force_login(member.user)
    return client


def _start_link(client) -> str:
    response = client.post("/claim/")
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("http://")
    assert "scope=identify+guilds.join" in location
    return location


def test_claim_happy_path(client, discord, percival, django_capture_on_commit_callbacks):
    _logged_in(client, percival)
    assert client.get("/claim/").status_code == 200
    back = authorize(_start_link(client))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(CALLBACK, back)

    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    percival.refresh_from_db()
    assert percival.discord_id == ARTHUR
    assert percival.discord_username == "Arthur Pendragon"
    assert percival.linked_at is not None
    # Added to the guild with guilds.join, holding exactly the expected role.
    assert discord.member_roles(ARTHUR) == [ROLE_IDS["squire"]]
    assert percival.in_guild and percival.role_sync_status == RoleSyncStatus.OK
    assert AuditLog.objects.filter(action="discord_linked", target_id=str(percival.pk)).exists()
    # The state is single use: the session no longer holds a pending flow.
    assert SESSION_KEY not in client.session
    # The OAuth access token was used for the join and is stored nowhere.
    join = discord.requests(
        method="PUT", path_prefix=f"/guilds/{discord.guild_id}/members/{ARTHUR}"
    )
    token = join[0]["json"]["access_token"]
    assert token and token not in str(Member.objects.filter(pk=percival.pk).values().get())


def test_forged_state_changes_nothing(client, discord, percival):
    _logged_in(client, percival)
    back = authorize(_start_link(client))
    response = client.get(CALLBACK, {**back, "state": "forged"})
    assert response.status_code == 400
    assert b"no longer valid" in response.content
    percival.refresh_from_db()
    assert percival.discord_id is None
    assert discord.requests(path_prefix="/oauth2/token") == []


def test_callback_without_a_started_flow(client, discord, percival):
    _logged_in(client, percival)
    response = client.get(CALLBACK, {"code": "x", "state": "y"})
    assert response.status_code == 400
    percival.refresh_from_db()
    assert percival.discord_id is None


def test_replayed_state_is_refused(client, discord, percival, django_capture_on_commit_callbacks):
    _logged_in(client, percival)
    back = authorize(_start_link(client))
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get(CALLBACK, back).status_code == 302
    Member.objects.filter(pk=percival.pk).update(discord_id=None)
    response = client.get(CALLBACK, back)
    assert response.status_code == 400
    percival.refresh_from_db()
    assert percival.discord_id is None


def test_expired_flow_is_refused(client, discord, percival):
    _logged_in(client, percival)
    back = authorize(_start_link(client))
    session = client.session
    session[SESSION_KEY] = {**session[SESSION_KEY], "expires_at": time.time() - 1}
    session.save()
    response = client.get(CALLBACK, back)
    assert response.status_code == 400 and b"expired" in response.content
    percival.refresh_from_db()
    assert percival.discord_id is None


def test_tampered_session_binding_links_nobody(client, discord, percival):
    """v1's IDOR: the member binding came from a cookie. Ours must match the logged-in user."""
    victim = personas.member("galahad")
    _logged_in(client, percival)
    back = authorize(_start_link(client))
    session = client.session
    session[SESSION_KEY] = {**session[SESSION_KEY], "member_id": victim.pk}
    session.save()
    response = client.get(CALLBACK, back)
    assert response.status_code == 400
    assert Member.objects.filter(discord_id=ARTHUR).count() == 0


def test_not_entitled_member_cannot_start(client, discord):
    lapsed = personas.member("mordred", status="canceled")
    _logged_in(client, lapsed)
    response = client.post("/claim/")
    assert response.status_code == 302 and response["Location"] == "/claim/"
    assert discord.requests() == []


def test_entitlement_is_checked_again_at_the_callback(client, discord, percival):
    _logged_in(client, percival)
    back = authorize(_start_link(client))
    personas.set_status(percival.subscription_id, "canceled")
    response = client.get(CALLBACK, back)
    assert response.status_code == 400 and b"active membership" in response.content
    percival.refresh_from_db()
    assert percival.discord_id is None
    assert discord.member_roles(ARTHUR) is None


def test_discord_account_linked_to_someone_else(client, discord, percival):
    personas.member("gawain", discord_id=ARTHUR)
    _logged_in(client, percival)
    back = authorize(_start_link(client))
    response = client.get(CALLBACK, back)
    assert response.status_code == 400 and b"another membership" in response.content
    percival.refresh_from_db()
    assert percival.discord_id is None


def test_already_linked_member_is_not_sent_to_discord(client, discord):
    linked = personas.member("bors", discord_id=GUINEVERE)
    Member.objects.filter(pk=linked.pk).update(in_guild=True)
    _logged_in(client, linked)
    response = client.post("/claim/")
    assert response["Location"] == "/claim/"
    assert discord.requests() == []


def test_guild_join_failure_shows_the_invite_link(
    client, discord, percival, django_capture_on_commit_callbacks, settings
):
    discord.add_fault(f"/guilds/{discord.guild_id}/members/{ARTHUR}", 403, method="PUT", count=1)
    _logged_in(client, percival)
    back = authorize(_start_link(client))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(CALLBACK, back, follow=False)
    percival.refresh_from_db()
    assert percival.discord_id == ARTHUR and percival.in_guild is False
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any(settings.DISCORD_INVITE_URL in m for m in messages)


def test_login_with_discord(client, discord):
    seat = personas.member("tristan", discord_id=ARTHUR, password=None)
    response = client.get("/login/discord/")
    back = authorize(response["Location"])
    response = client.get(CALLBACK, back)
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert int(client.session["_auth_user_id"]) == seat.user.pk


def test_login_with_an_unknown_discord_account_is_refused(client, discord):
    response = client.get("/login/discord/")
    back = authorize(response["Location"])
    response = client.get(CALLBACK, back)
    assert response.status_code == 400
    assert b"could not log you in" in response.content
    assert "_auth_user_id" not in client.session


def test_denied_consent_changes_nothing(client, discord, percival):
    _logged_in(client, percival)
    discord.set_oauth_user(ARTHUR, deny=True)
    back = authorize(_start_link(client))
    assert back.get("error") == "access_denied"
    response = client.get(CALLBACK, back)
    assert response.status_code == 400
    percival.refresh_from_db()
    assert percival.discord_id is None
