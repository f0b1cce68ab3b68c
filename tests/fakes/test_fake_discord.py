"""The fake Discord speaks Discord's wire formats: REST, rate limits, OAuth2 and the gateway.

Every test talks to a real server in a background thread over HTTP or a websocket; the last
one drives an unmodified discord.py 2.7 `Client` against it, the way `manage.py runbot` does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import discord
import pytest
import requests
import yarl
from discord.gateway import DiscordWebSocket

from fakes.discord import FakeDiscordServer
from fakes.discord.seed import (
    ARTHUR_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    CHANNEL_ADMIN_ALERTS_ID,
    CHANNEL_INTRODUCTIONS_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    GUILD_ID,
    GUINEVERE_ID,
    LANCELOT_ID,
    REQUIRED_INTENTS,
    ROLE_BOT_ID,
    ROLE_DEBTOR_ID,
    ROLE_KNIGHT_ID,
    ROLE_LORD_ID,
    ROLE_SQUIRE_ID,
)
from tests.fakes.latency import check_latency

BOT = {"Authorization": f"Bot {BOT_TOKEN}"}
REDIRECT_URI = "http://testserver/oauth/discord/callback/"
GUILD = f"/guilds/{GUILD_ID}"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeDiscordServer]:
    with FakeDiscordServer(heartbeat_interval_ms=250) as srv:
        yield srv


@pytest.fixture
def srv(server: FakeDiscordServer) -> Iterator[FakeDiscordServer]:
    """The shared server, back to its seeded world for every test."""
    server.state.reset()
    yield server
    server.state.reset()


def api(srv: FakeDiscordServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", BOT)
    return requests.request(method, srv.api_base + path, timeout=10, **kwargs)


def control(srv: FakeDiscordServer, method: str, path: str, **kwargs: Any) -> Any:
    response = requests.request(method, f"{srv.url}/_control{path}", timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def oauth_token(srv: FakeDiscordServer, scope: str = "identify guilds.join") -> dict[str, Any]:
    """Walk authorize -> callback code -> token exchange for the current test user."""
    code = authorize_code(srv, scope=scope)
    response = requests.post(
        f"{srv.api_base}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def authorize(srv: FakeDiscordServer, **params: str) -> requests.Response:
    query = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "identify guilds.join",
        "state": "st4te",
        **params,
    }
    return requests.get(srv.authorize_url, params=query, allow_redirects=False, timeout=10)


def authorize_code(srv: FakeDiscordServer, **params: str) -> str:
    response = authorize(srv, **params)
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]


# --- REST basics ----------------------------------------------------------------------


def test_bot_token_is_required_and_errors_are_discord_json(srv: FakeDiscordServer) -> None:
    me = api(srv, "GET", "/users/@me")
    assert me.status_code == 200
    assert me.json()["id"] == BOT_USER_ID and me.json()["bot"] is True

    for headers in ({}, {"Authorization": "Bot wrong"}, {"Authorization": BOT_TOKEN}):
        refused = api(srv, "GET", "/users/@me", headers=headers)
        assert refused.status_code == 401
        # discord.py parses a body only when the Content-Type is exactly this.
        assert refused.headers["Content-Type"] == "application/json"
        assert refused.json() == {"message": "401: Unauthorized", "code": 0}


def test_every_rest_response_carries_rate_limit_headers(srv: FakeDiscordServer) -> None:
    for response in (
        api(srv, "GET", f"{GUILD}/roles"),
        api(srv, "GET", f"{GUILD}/members/{ARTHUR_ID}"),  # a 404
        api(srv, "GET", "/users/@me", headers={}),  # a 401
    ):
        for header in (
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "X-RateLimit-Reset-After",
            "X-RateLimit-Bucket",
        ):
            assert header in response.headers, (response.status_code, header)


def test_application_gateway_and_guild_reads(srv: FakeDiscordServer) -> None:
    app = api(srv, "GET", "/oauth2/applications/@me").json()
    assert app["id"] == CLIENT_ID

    gateway_bot = api(srv, "GET", "/gateway/bot").json()
    assert gateway_bot["url"] == srv.gateway_url
    assert gateway_bot["shards"] == 1
    assert gateway_bot["session_start_limit"]["max_concurrency"] == 1
    assert api(srv, "GET", "/gateway", headers={}).json() == {"url": srv.gateway_url}

    guild = api(srv, "GET", GUILD, params={"with_counts": "true"}).json()
    assert guild["id"] == GUILD_ID and guild["approximate_member_count"] == 3

    roles = {r["id"]: r for r in api(srv, "GET", f"{GUILD}/roles").json()}
    assert roles[GUILD_ID]["name"] == "@everyone" and roles[GUILD_ID]["position"] == 0
    managed = [ROLE_SQUIRE_ID, ROLE_KNIGHT_ID, ROLE_LORD_ID, ROLE_DEBTOR_ID]
    assert all(roles[ROLE_BOT_ID]["position"] > roles[r]["position"] for r in managed)
    assert roles[ROLE_BOT_ID]["tags"] == {"bot_id": BOT_USER_ID}

    channels = {c["name"] for c in api(srv, "GET", f"{GUILD}/channels").json()}
    assert channels == {"introductions", "billing-support", "admin-alerts", "general"}

    unknown_guild = api(srv, "GET", "/guilds/1/roles")
    assert unknown_guild.status_code == 404 and unknown_guild.json()["code"] == 10004


def test_get_member_and_unknown_member(srv: FakeDiscordServer) -> None:
    member = api(srv, "GET", f"{GUILD}/members/{LANCELOT_ID}")
    assert member.status_code == 200
    body = member.json()
    assert body["user"]["id"] == LANCELOT_ID and body["user"]["username"] == "lancelot"
    assert "bot" not in body["user"]  # Discord omits it for humans
    for key in ("roles", "joined_at", "nick", "pending", "deaf", "mute", "flags"):
        assert key in body

    missing = api(srv, "GET", f"{GUILD}/members/{ARTHUR_ID}")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Unknown Member", "code": 10007}


def test_member_list_pages_through_2500_members_with_after(srv: FakeDiscordServer) -> None:
    seeded = control(
        srv, "POST", "/seed_members", json={"count": 2500, "role_ids": [ROLE_KNIGHT_ID]}
    )
    assert seeded["added"] == 2500 and seeded["member_count"] == 2503

    seen: list[int] = []
    after = "0"
    pages = 0
    while True:
        page = api(srv, "GET", f"{GUILD}/members", params={"limit": 1000, "after": after})
        assert page.status_code == 200
        members = page.json()
        pages += 1
        if not members:
            break
        seen += [int(m["user"]["id"]) for m in members]
        after = members[-1]["user"]["id"]
    assert pages == 4  # 1000 + 1000 + 503, then an empty page ends the walk
    assert len(seen) == 2503 and seen == sorted(set(seen))

    default = api(srv, "GET", f"{GUILD}/members").json()
    assert len(default) == 1  # Discord's default limit is 1

    for bad in ("0", "1001"):
        refused = api(srv, "GET", f"{GUILD}/members", params={"limit": bad})
        assert refused.status_code == 400 and refused.json()["code"] == 50035


def test_member_list_stays_fast_with_200k_members(srv: FakeDiscordServer) -> None:
    srv.state.seed_members(200_000)
    last_page_after = srv.state.list_members(after=0, limit=1000)[-1]["user"]["id"]
    started = time.perf_counter()
    for _ in range(20):
        srv.state.list_members(after=int(last_page_after) + 150_000, limit=1000)
    per_page = (time.perf_counter() - started) / 20
    assert per_page < 0.05, f"{per_page * 1000:.1f} ms per page"

    page = api(srv, "GET", f"{GUILD}/members", params={"limit": 1000, "after": last_page_after})
    assert page.status_code == 200 and len(page.json()) == 1000


# --- Roles: audit reason, hierarchy, rate limits ----------------------------------------


def test_role_add_and_remove_record_the_audit_reason(srv: FakeDiscordServer) -> None:
    path = f"{GUILD}/members/{LANCELOT_ID}/roles/{ROLE_SQUIRE_ID}"
    reason = "paid, not yet introduced — seat 3"
    # discord.py URL-quotes the reason; the fake records it decoded.
    headers = {**BOT, "X-Audit-Log-Reason": quote(reason, safe="/ ")}

    added = api(srv, "PUT", path, headers=headers)
    assert added.status_code == 204 and added.content == b""
    assert srv.state.member_roles(LANCELOT_ID) == [ROLE_SQUIRE_ID]

    removed = api(srv, "DELETE", path, headers={**BOT, "X-Audit-Log-Reason": "cancelled"})
    assert removed.status_code == 204
    assert srv.state.member_roles(LANCELOT_ID) == []

    log = srv.state.requests(path_prefix=f"{GUILD}/members/{LANCELOT_ID}/roles")
    assert [(e["method"], e["status"], e["reason"]) for e in log] == [
        ("PUT", 204, reason),
        ("DELETE", 204, "cancelled"),
    ]
    via_http = control(srv, "GET", "/requests", params={"method": "PUT", "path_prefix": path})
    assert len(via_http) == 1 and via_http[0]["route"] == "guild_member_role"


def test_roles_at_or_above_the_bot_role_are_refused(srv: FakeDiscordServer) -> None:
    own_role = api(srv, "PUT", f"{GUILD}/members/{LANCELOT_ID}/roles/{ROLE_BOT_ID}")
    assert own_role.status_code == 403

    control(srv, "POST", "/bot_role_position", json={"position": 1})
    roles = {r["id"]: r["position"] for r in api(srv, "GET", f"{GUILD}/roles").json()}
    assert roles[ROLE_BOT_ID] == 1 and roles[ROLE_SQUIRE_ID] > 1

    refused = api(srv, "PUT", f"{GUILD}/members/{LANCELOT_ID}/roles/{ROLE_SQUIRE_ID}")
    assert refused.status_code == 403
    assert refused.json() == {"message": "Missing Permissions", "code": 50013}
    assert srv.state.member_roles(LANCELOT_ID) == []

    # Positions stay dense, as on Discord: moving the bot to 2 puts it between Debtor (1)
    # and Squire (3), so Debtor can be granted and Squire cannot.
    srv.state.set_bot_role_position(2)
    member = f"{GUILD}/members/{LANCELOT_ID}/roles"
    assert api(srv, "PUT", f"{member}/{ROLE_DEBTOR_ID}").status_code == 204
    assert api(srv, "PUT", f"{member}/{ROLE_SQUIRE_ID}").status_code == 403
    srv.state.set_bot_role_position(3)
    assert api(srv, "PUT", f"{member}/{ROLE_SQUIRE_ID}").status_code == 204
    assert srv.state.member_roles(LANCELOT_ID) == [ROLE_DEBTOR_ID, ROLE_SQUIRE_ID]


def test_patch_member_roles_and_kick(srv: FakeDiscordServer) -> None:
    patched = api(srv, "PATCH", f"{GUILD}/members/{LANCELOT_ID}", json={"roles": [ROLE_LORD_ID]})
    assert patched.status_code == 200 and patched.json()["roles"] == [ROLE_LORD_ID]

    kicked = api(srv, "DELETE", f"{GUILD}/members/{LANCELOT_ID}")
    assert kicked.status_code == 204
    assert srv.state.member_json(LANCELOT_ID) is None
    again = api(srv, "DELETE", f"{GUILD}/members/{LANCELOT_ID}")
    assert again.status_code == 404 and again.json()["code"] == 10007


def test_exhausted_role_bucket_answers_429_in_discords_shape(srv: FakeDiscordServer) -> None:
    srv.state.set_rate_limit("guild_member_role", 3, 0.5)
    path = f"{GUILD}/members/{LANCELOT_ID}/roles/{ROLE_SQUIRE_ID}"
    answers = [api(srv, "PUT", path) for _ in range(4)]
    assert [a.status_code for a in answers] == [204, 204, 204, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert len({a.headers["X-RateLimit-Bucket"] for a in answers}) == 1

    limited = answers[3]
    body = limited.json()
    assert limited.headers["Content-Type"] == "application/json"
    assert body["message"] == "You are being rate limited."
    assert body["global"] is False and 0 < body["retry_after"] <= 0.5
    assert limited.headers["Via"] == "1.1 google"  # discord.py only retries with Via
    assert limited.headers["X-RateLimit-Scope"] == "user"
    assert int(limited.headers["Retry-After"]) >= 1

    time.sleep(body["retry_after"] + 0.05)
    assert api(srv, "PUT", path).status_code == 204
    stats = control(srv, "GET", "/state")["stats"]
    assert stats["rate_limited"] == {"organic": 1, "forced": 0, "global": 0}
    assert stats["invalid_requests"] == 1


def test_global_limit_applies_across_routes(srv: FakeDiscordServer) -> None:
    control(srv, "POST", "/rate_limits", json={"global": [5, 0.5]})
    answers = [api(srv, "GET", p) for p in ["/users/@me", f"{GUILD}/roles"] * 3]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[-1].json()["global"] is True
    assert answers[-1].headers["X-RateLimit-Scope"] == "global"
    assert srv.state.snapshot()["stats"]["rate_limited"]["global"] == 1


def test_latency_delays_every_rest_call_side_by_side(srv: FakeDiscordServer) -> None:
    check_latency(f"{srv.url}/_control/latency", lambda: api(srv, "GET", "/users/@me"))


def test_injected_faults_count_down_or_expire(srv: FakeDiscordServer) -> None:
    fault = control(
        srv,
        "POST",
        "/faults",
        json={
            "method": "PUT",
            "path_prefix": f"/api/v10{GUILD}/members",
            "kind": "429",
            "count": 2,
            "retry_after": 0.25,
        },
    )
    assert fault["id"]
    path = f"{GUILD}/members/{LANCELOT_ID}/roles/{ROLE_KNIGHT_ID}"
    answers = [api(srv, "PUT", path) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 204]
    assert answers[0].json() == {
        "message": "You are being rate limited.",
        "retry_after": 0.25,
        "global": False,
    }
    assert answers[0].headers["Via"] == "1.1 google"
    assert api(srv, "GET", f"{GUILD}/roles").status_code == 200  # other paths unaffected

    srv.state.add_fault("/guilds", 503, count=None, seconds=0.3)
    assert api(srv, "GET", f"{GUILD}/roles").status_code == 503
    time.sleep(0.35)
    assert api(srv, "GET", f"{GUILD}/roles").status_code == 200

    srv.state.add_fault(f"{GUILD}/members", 403, method="DELETE")
    forbidden = api(srv, "DELETE", path)
    assert forbidden.status_code == 403 and forbidden.json()["code"] == 50013
    assert srv.state.snapshot()["stats"]["rate_limited"] == {"organic": 0, "forced": 2, "global": 0}


# --- OAuth2 -------------------------------------------------------------------------------


def test_oauth_authorize_redirects_with_code_and_state(srv: FakeDiscordServer) -> None:
    response = authorize(srv)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/oauth/discord/callback/"
    query = parse_qs(location.query)
    assert query["state"] == ["st4te"] and query["code"][0]
    logged = srv.state.requests(route="oauth_authorize")
    assert [(e["method"], e["status"]) for e in logged] == [("GET", 302)]


def test_oauth_code_exchange_and_users_me_as_the_user(srv: FakeDiscordServer) -> None:
    token = oauth_token(srv)
    assert token["token_type"] == "Bearer"
    assert set(token["scope"].split()) == {"identify", "guilds.join"}
    assert token["expires_in"] > 0 and token["refresh_token"]

    me = api(srv, "GET", "/users/@me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == ARTHUR_ID and me.json()["username"] == "arthur"
    assert "email" not in me.json()  # no `email` scope

    srv.state.set_oauth_user(GUINEVERE_ID)
    other = oauth_token(srv, scope="identify email")
    me = api(srv, "GET", "/users/@me", headers={"Authorization": f"Bearer {other['access_token']}"})
    assert me.json()["id"] == GUINEVERE_ID and me.json()["email"] == "guinevere@example.com"


def test_oauth_codes_are_single_use_and_bound_to_the_redirect_uri(srv: FakeDiscordServer) -> None:
    def exchange(code: str, redirect_uri: str = REDIRECT_URI) -> requests.Response:
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        return requests.post(
            f"{srv.api_base}/oauth2/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            headers={"Authorization": f"Basic {basic}"},
            timeout=10,
        )

    code = authorize_code(srv)
    assert exchange(code).status_code == 200
    reused = exchange(code)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    wrong_redirect = exchange(authorize_code(srv), "http://evil.example/callback")
    assert wrong_redirect.status_code == 400 and wrong_redirect.json()["error"] == "invalid_grant"

    bad_client = requests.post(
        f"{srv.api_base}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": authorize_code(srv),
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "client_secret": "nope",
        },
        timeout=10,
    )
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"
    logged = srv.state.requests(route="oauth_token")
    assert all(e["json"]["code"] == "***" for e in logged if e["json"])  # no secrets in logs


def test_oauth_denied_consent_and_the_chooser_page(srv: FakeDiscordServer) -> None:
    control(srv, "POST", "/oauth/current_user", json={"user_id": ARTHUR_ID, "deny": True})
    denied = parse_qs(urlsplit(authorize(srv).headers["Location"]).query)
    assert denied["error"] == ["access_denied"] and denied["state"] == ["st4te"]

    control(srv, "POST", "/oauth/current_user", json={"user_id": None})
    page = authorize(srv)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "Authorize as Arthur Pendragon" in page.text and "<script" not in page.text
    chosen = authorize(srv, fake_user=GUINEVERE_ID)
    assert chosen.status_code == 302 and "code=" in chosen.headers["Location"]

    assert authorize(srv, client_id="123").status_code == 400
    assert authorize(srv, scope="identify bogus").status_code == 400


def test_add_member_with_an_oauth_token_201_then_204(srv: FakeDiscordServer) -> None:
    token = oauth_token(srv)["access_token"]
    path = f"{GUILD}/members/{ARTHUR_ID}"
    added = api(srv, "PUT", path, json={"access_token": token, "roles": [ROLE_SQUIRE_ID]})
    assert added.status_code == 201
    assert added.json()["user"]["id"] == ARTHUR_ID and added.json()["roles"] == [ROLE_SQUIRE_ID]

    again = api(srv, "PUT", path, json={"access_token": token})
    assert again.status_code == 204 and again.content == b""

    identify_only = oauth_token(srv, scope="identify")["access_token"]
    srv.state.remove_member(ARTHUR_ID)
    refused = api(srv, "PUT", path, json={"access_token": identify_only})
    assert refused.status_code == 403 and refused.json()["code"] == 50025


# --- DMs, messages, reactions -------------------------------------------------------------


def test_dms_reach_members_but_not_closed_dms_or_strangers(srv: FakeDiscordServer) -> None:
    channel = api(srv, "POST", "/users/@me/channels", json={"recipient_id": LANCELOT_ID}).json()
    assert channel["type"] == 1 and channel["recipients"][0]["id"] == LANCELOT_ID
    same = api(srv, "POST", "/users/@me/channels", json={"recipient_id": LANCELOT_ID}).json()
    assert same["id"] == channel["id"]

    sent = api(srv, "POST", f"/channels/{channel['id']}/messages", json={"content": "Welcome!"})
    assert sent.status_code == 200 and sent.json()["author"]["id"] == BOT_USER_ID
    assert [m["content"] for m in srv.state.dms_for(LANCELOT_ID)] == ["Welcome!"]

    control(srv, "POST", f"/users/{LANCELOT_ID}/dms_closed", json={"closed": True})
    closed = api(srv, "POST", f"/channels/{channel['id']}/messages", json={"content": "Hi"})
    assert closed.status_code == 403
    assert closed.json() == {"message": "Cannot send messages to this user", "code": 50007}

    # Discord refuses DMs to users who share no guild with the bot.
    stranger = api(srv, "POST", "/users/@me/channels", json={"recipient_id": ARTHUR_ID}).json()
    refused = api(srv, "POST", f"/channels/{stranger['id']}/messages", json={"content": "Hi"})
    assert refused.status_code == 403 and refused.json()["code"] == 50007

    too_long = api(
        srv, "POST", f"/channels/{CHANNEL_ADMIN_ALERTS_ID}/messages", json={"content": "x" * 2001}
    )
    assert too_long.status_code == 400 and too_long.json()["code"] == 50035


def test_reactions_and_message_fetch(srv: FakeDiscordServer) -> None:
    intro = srv.state.post_message(CHANNEL_INTRODUCTIONS_ID, LANCELOT_ID, "I joust.")
    emoji = quote("🎉")
    path = f"/channels/{CHANNEL_INTRODUCTIONS_ID}/messages/{intro['id']}"
    assert api(srv, "PUT", f"{path}/reactions/{emoji}/@me").status_code == 204
    assert srv.state.reactions(intro["id"]) == {"🎉": [BOT_USER_ID]}

    fetched = api(srv, "GET", path).json()
    assert fetched["content"] == "I joust." and fetched["reactions"][0]["me"] is True
    missing = api(srv, "GET", f"/channels/{CHANNEL_INTRODUCTIONS_ID}/messages/1")
    assert missing.status_code == 404 and missing.json()["code"] == 10008


def test_channel_history_pages_with_after_and_before_newest_first(srv: FakeDiscordServer) -> None:
    """Messages posted while no gateway client is connected are kept and listed in Discord's
    order: each page newest first; ``after`` gives the messages right after the cursor."""
    assert srv.state.connected_sessions() == []
    posted = [
        srv.state.post_message(CHANNEL_INTRODUCTIONS_ID, LANCELOT_ID, f"message {n}")["id"]
        for n in range(7)
    ]
    path = f"/channels/{CHANNEL_INTRODUCTIONS_ID}/messages"

    latest = api(srv, "GET", path, params={"limit": 3}).json()
    assert [m["id"] for m in latest] == posted[:-4:-1]
    first = api(srv, "GET", path, params={"after": "0", "limit": 3}).json()
    assert [m["id"] for m in first] == posted[2::-1]
    assert first[0]["content"] == "message 2" and first[0]["author"]["id"] == LANCELOT_ID
    assert "guild_id" not in first[0] and "member" not in first[0]  # REST shape, not gateway
    rest = api(srv, "GET", path, params={"after": posted[2], "limit": 100}).json()
    assert [m["id"] for m in rest] == posted[:2:-1]
    assert api(srv, "GET", path, params={"after": posted[-1]}).json() == []
    before = api(srv, "GET", path, params={"before": posted[3], "limit": 2}).json()
    assert [m["id"] for m in before] == [posted[2], posted[1]]
    assert len(api(srv, "GET", path).json()) == 7  # default limit 50

    too_many = api(srv, "GET", path, params={"limit": 101})
    assert too_many.status_code == 400 and too_many.json()["code"] == 50035
    bad_cursor = api(srv, "GET", path, params={"after": "x"})
    assert bad_cursor.status_code == 400
    unknown = api(srv, "GET", "/channels/1/messages")
    assert unknown.status_code == 404 and unknown.json()["code"] == 10003


# --- Control API and sandbox page ---------------------------------------------------------


def test_control_api_arranges_the_world(srv: FakeDiscordServer) -> None:
    user = control(srv, "POST", "/users", json={"id": "700000000000000001", "username": "percival"})
    assert user["username"] == "percival"
    control(srv, "POST", "/guild/members", json={"user_id": user["id"], "roles": [ROLE_KNIGHT_ID]})
    state = control(srv, "GET", "/state")
    members = {m["user"]["id"]: m["roles"] for m in state["members"]}
    assert members[user["id"]] == [ROLE_KNIGHT_ID]
    assert state["guild"]["member_count"] == 4

    message = control(
        srv,
        "POST",
        "/messages",
        json={
            "channel_id": CHANNEL_INTRODUCTIONS_ID,
            "author_id": user["id"],
            "content": "Hello",
            "thread": "percival's thread",
        },
    )
    assert message["channel_id"] != CHANNEL_INTRODUCTIONS_ID
    thread = control(srv, "GET", "/state")["guild"]["threads"][0]
    assert thread["id"] == message["channel_id"] and thread["parent_id"] == CHANNEL_INTRODUCTIONS_ID
    edited = control(srv, "PATCH", f"/messages/{message['id']}", json={"content": "Hello again"})
    assert edited["content"] == "Hello again" and edited["edited_timestamp"]

    control(srv, "DELETE", f"/guild/members/{user['id']}")
    assert srv.state.member_json(user["id"]) is None
    not_member = requests.post(
        f"{srv.url}/_control/messages",
        json={"channel_id": CHANNEL_INTRODUCTIONS_ID, "author_id": user["id"], "content": "x"},
        timeout=5,
    )
    assert not_member.status_code == 403

    api(srv, "GET", "/users/@me")
    assert control(srv, "GET", "/requests")
    control(srv, "POST", "/requests/clear")
    assert control(srv, "GET", "/requests") == []

    control(srv, "POST", "/reset")
    assert control(srv, "GET", "/state")["guild"]["member_count"] == 3


def test_sandbox_page_shows_the_guild_and_posts_as_a_user(srv: FakeDiscordServer) -> None:
    api(
        srv,
        "POST",
        f"/channels/{srv.state.rest_open_dm(LANCELOT_ID)['id']}/messages",
        json={"content": "Your seat is ready"},
    )
    page = requests.get(srv.url + "/", timeout=5)
    assert page.status_code == 200 and "<script" not in page.text
    assert "<label for='author'>" in page.text and "Your seat is ready" in page.text
    assert "lancelot" in page.text and "Join the guild" in page.text

    posted = requests.post(
        f"{srv.url}/_sandbox/post",
        data={
            "author_id": LANCELOT_ID,
            "channel_id": CHANNEL_INTRODUCTIONS_ID,
            "content": "Greetings, council.",
        },
        allow_redirects=False,
        timeout=5,
    )
    assert posted.status_code == 303
    assert [m["content"] for m in srv.state.channel_messages(CHANNEL_INTRODUCTIONS_ID)] == [
        "Greetings, council."
    ]
    joined = requests.post(
        f"{srv.url}/_sandbox/join", data={"user_id": ARTHUR_ID}, allow_redirects=False, timeout=5
    )
    assert joined.status_code == 303 and srv.state.member_json(ARTHUR_ID) is not None


# --- Gateway (raw websocket) ----------------------------------------------------------------


class RawGateway:
    """A bare websocket client: enough to check the gateway's own behaviour."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seq: int | None = None

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        payload = json.loads(msg.data)
        if payload.get("s") is not None:
            self.seq = payload["s"]
        return payload

    async def until(self, event: str, timeout: float = 5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            payload = await self.recv(timeout=max(0.01, deadline - time.monotonic()))
            if payload.get("t") == event:
                return payload

    async def send(self, op: int, d: Any) -> None:
        await self.ws.send_str(json.dumps({"op": op, "d": d}))

    async def identify(self, intents: int = REQUIRED_INTENTS, token: str = BOT_TOKEN) -> None:
        hello = await self.recv()
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 250
        await self.send(2, {"token": token, "intents": intents, "properties": {}})


def run_gateway(srv: FakeDiscordServer, scenario: Any) -> Any:
    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            return await scenario(session, f"{srv.gateway_url}?v=10&encoding=json")

    return asyncio.run(main())


def test_gateway_identify_ready_guild_create_heartbeat(srv: FakeDiscordServer) -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        async with session.ws_connect(url) as ws:
            gw = RawGateway(ws)
            await gw.identify()
            ready = await gw.recv()
            assert ready["t"] == "READY" and ready["s"] == 1
            assert ready["d"]["user"]["id"] == BOT_USER_ID
            assert ready["d"]["guilds"] == [{"id": GUILD_ID, "unavailable": True}]
            assert ready["d"]["resume_gateway_url"] == srv.gateway_url
            assert ready["d"]["application"]["id"] == CLIENT_ID
            guild = await gw.recv()
            assert guild["t"] == "GUILD_CREATE" and guild["d"]["unavailable"] is False
            assert guild["d"]["member_count"] == 3 and len(guild["d"]["members"]) == 3
            assert guild["d"]["large"] is False and len(guild["d"]["roles"]) == 6

            await gw.send(1, gw.seq)
            assert (await gw.recv())["op"] == 11

            # A role written through REST reaches the gateway as GUILD_MEMBER_UPDATE.
            await asyncio.to_thread(
                api, srv, "PUT", f"{GUILD}/members/{LANCELOT_ID}/roles/{ROLE_SQUIRE_ID}"
            )
            update = await gw.until("GUILD_MEMBER_UPDATE")
            assert update["d"]["user"]["id"] == LANCELOT_ID
            assert update["d"]["roles"] == [ROLE_SQUIRE_ID]
            sessions = control(srv, "GET", "/state")["gateway_sessions"]
            assert [s["connected"] for s in sessions] == [True]

    run_gateway(srv, scenario)


def test_gateway_refuses_bad_tokens_and_missing_intents(srv: FakeDiscordServer) -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> list[int]:
        codes = []
        for token, intents in ((BOT_TOKEN, 1 | 2 | (1 << 9)), ("wrong", REQUIRED_INTENTS)):
            async with session.ws_connect(url) as ws:
                await RawGateway(ws).identify(intents=intents, token=token)
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.CLOSE
                codes.append(msg.data)
        return codes

    assert run_gateway(srv, scenario) == [4014, 4004]


def test_gateway_resume_replays_missed_events(srv: FakeDiscordServer) -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        async with session.ws_connect(url) as ws:
            gw = RawGateway(ws)
            await gw.identify()
            session_id = (await gw.until("READY"))["d"]["session_id"]
            await gw.until("GUILD_CREATE")
            last_seq = gw.seq
            closed = await asyncio.to_thread(srv.state.gateway_close, code=4000)
            assert closed == 1
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4000

        # While disconnected: a message and a join happen.
        await asyncio.to_thread(
            srv.state.post_message, CHANNEL_INTRODUCTIONS_ID, LANCELOT_ID, "missed me?"
        )
        await asyncio.to_thread(srv.state.add_member, ARTHUR_ID)

        async with session.ws_connect(url) as ws:
            gw = RawGateway(ws)
            assert (await gw.recv())["op"] == 10
            await gw.send(6, {"token": BOT_TOKEN, "session_id": session_id, "seq": last_seq})
            replayed = [await gw.recv() for _ in range(3)]
            assert [p["t"] for p in replayed] == ["MESSAGE_CREATE", "GUILD_MEMBER_ADD", "RESUMED"]
            assert replayed[0]["d"]["content"] == "missed me?"
            assert [p["s"] for p in replayed] == [last_seq + 1, last_seq + 2, last_seq + 3]

            await gw.send(6, {"token": BOT_TOKEN, "session_id": session_id, "seq": 1})
            again = await ws.receive(timeout=5)  # this socket already resumed
            assert again.type == aiohttp.WSMsgType.CLOSE and again.data == 4005

        async with session.ws_connect(url) as ws:
            gw = RawGateway(ws)
            await gw.recv()
            await gw.send(6, {"token": BOT_TOKEN, "session_id": "unknown", "seq": 1})
            assert await gw.recv() == {"op": 9, "d": False}  # invalid session: identify again
        state = control(srv, "GET", "/state")
        assert state["gateway"]["identify_count"] >= 1 and state["gateway"]["resume_count"] == 1

    run_gateway(srv, scenario)


def test_gateway_resume_too_far_back_is_an_invalid_session(srv: FakeDiscordServer) -> None:
    srv.state.set_config(resume_buffer_size=2)

    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        async with session.ws_connect(url) as ws:
            gw = RawGateway(ws)
            await gw.identify()
            session_id = (await gw.until("READY"))["d"]["session_id"]
            await gw.until("GUILD_CREATE")
        for n in range(3):  # more than the session keeps while the bot is away
            await asyncio.to_thread(
                srv.state.post_message, CHANNEL_INTRODUCTIONS_ID, LANCELOT_ID, f"m{n}"
            )
        async with session.ws_connect(url) as ws:
            gw = RawGateway(ws)
            await gw.recv()
            await gw.send(6, {"token": BOT_TOKEN, "session_id": session_id, "seq": 2})
            assert await gw.recv() == {"op": 9, "d": False}

    run_gateway(srv, scenario)


def test_gateway_member_chunks_for_a_large_guild(srv: FakeDiscordServer) -> None:
    srv.state.seed_members(2500)

    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        async with session.ws_connect(url) as ws:
            gw = RawGateway(ws)
            await gw.identify()
            guild = (await gw.until("GUILD_CREATE"))["d"]
            assert guild["large"] is True and guild["member_count"] == 2503
            assert [m["user"]["id"] for m in guild["members"]] == [BOT_USER_ID]
            await gw.send(8, {"guild_id": GUILD_ID, "query": "", "limit": 0, "nonce": "n1"})
            chunks = [(await gw.until("GUILD_MEMBERS_CHUNK"))["d"] for _ in range(3)]
            assert [(c["chunk_index"], c["chunk_count"], c["nonce"]) for c in chunks] == [
                (0, 3, "n1"),
                (1, 3, "n1"),
                (2, 3, "n1"),
            ]
            assert sum(len(c["members"]) for c in chunks) == 2503

            # Since 2025-08 Discord allows one all-members request per guild per 30 s.
            await asyncio.to_thread(srv.state.set_config, member_request_interval_s=30)
            await gw.send(8, {"guild_id": GUILD_ID, "query": "", "limit": 0, "nonce": "n2"})
            limited = (await gw.until("RATE_LIMITED"))["d"]
            assert limited["opcode"] == 8 and limited["meta"]["nonce"] == "n2"
            assert 0 < limited["retry_after"] <= 30
            await gw.send(8, {"guild_id": GUILD_ID, "user_ids": [LANCELOT_ID, "1"], "nonce": "n3"})
            by_id = (await gw.until("GUILD_MEMBERS_CHUNK"))["d"]
            assert [m["user"]["id"] for m in by_id["members"]] == [LANCELOT_ID]
            assert by_id["not_found"] == ["1"]

    run_gateway(srv, scenario)


# --- discord.py compatibility ------------------------------------------------------------


class QuickClient(discord.Client):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s before every IDENTIFY but the first; tests need not."""


def test_discord_py_client_against_the_fake(srv: FakeDiscordServer) -> None:
    """An unmodified discord.py 2.7 Client: REST base via `Route.BASE`; the gateway via
    `DiscordWebSocket.DEFAULT_GATEWAY`, the constant a plain Client connects to (it never
    calls GET /gateway/bot) and falls back to after an invalid session."""
    events: dict[str, Any] = {}

    async def scenario() -> None:
        intents = discord.Intents.default()
        intents.members = True
        intents.message_content = True
        client = QuickClient(intents=intents, guild_ready_timeout=0.1)
        ready, message, joined = asyncio.Event(), asyncio.Event(), asyncio.Event()

        @client.event
        async def on_ready() -> None:
            guild = client.get_guild(int(GUILD_ID))
            assert guild is not None
            events["roles"] = sorted(r.name for r in guild.roles)
            events["members"] = sorted(m.name for m in guild.members)
            events["ready_count"] = events.get("ready_count", 0) + 1
            ready.set()

        @client.event
        async def on_message(msg: discord.Message) -> None:
            events["message"] = (msg.content, msg.author.id, msg.channel.id)
            message.set()

        @client.event
        async def on_member_join(member: discord.Member) -> None:
            events["joined"] = member.id
            joined.set()

        runner = asyncio.create_task(client.start(BOT_TOKEN))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            await asyncio.to_thread(
                srv.state.post_message, CHANNEL_INTRODUCTIONS_ID, LANCELOT_ID, "A long intro."
            )
            await asyncio.wait_for(message.wait(), 5)
            await asyncio.to_thread(srv.state.add_member, ARTHUR_ID)
            await asyncio.wait_for(joined.wait(), 5)

            guild = client.get_guild(int(GUILD_ID))
            assert guild is not None
            member = guild.get_member(int(ARTHUR_ID))
            squire = guild.get_role(int(ROLE_SQUIRE_ID))
            assert member is not None and squire is not None
            await member.add_roles(squire, reason="paid, not yet introduced")
            await asyncio.to_thread(
                srv.state.wait_for, lambda s: s.member_roles(ARTHUR_ID) == [ROLE_SQUIRE_ID]
            )
            events["sessions"] = srv.state.connected_sessions()
            events["role_writes"] = srv.state.requests(method="PUT", route="guild_member_role")
            events["first_routes"] = [e["route"] for e in srv.state.requests()[:2]]

            # A non-resumable INVALID_SESSION sends discord.py back to DEFAULT_GATEWAY to
            # identify afresh: its cache then matches the reset world (Arthur is gone).
            ready.clear()
            await asyncio.to_thread(srv.state.reset, reidentify=True)
            await asyncio.wait_for(ready.wait(), 10)
            fresh = client.get_guild(int(GUILD_ID))
            assert fresh is not None
            events["members_after_reset"] = sorted(m.name for m in fresh.members)
        finally:
            await client.close()
            await runner

    old_base, old_gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = srv.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(srv.gateway_url)
    try:
        asyncio.run(scenario())
    finally:
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway

    assert events["roles"] == ["@everyone", "Debtor", "Gatekeeper", "Knight", "Lord", "Squire"]
    assert events["members"] == ["Gatekeeper", "lancelot", "merlin"]
    assert events["message"] == ("A long intro.", int(LANCELOT_ID), int(CHANNEL_INTRODUCTIONS_ID))
    assert events["joined"] == int(ARTHUR_ID)
    assert len(events["sessions"]) == 1
    assert [(e["status"], e["reason"]) for e in events["role_writes"]] == [
        (204, "paid, not yet introduced")
    ]
    assert events["first_routes"] == ["users_me", "application"]  # what client.login() calls
    assert events["ready_count"] == 2
    assert events["members_after_reset"] == ["Gatekeeper", "lancelot", "merlin"]
