"""The REST API (`/api/v10/...`): route table and handlers.

Each route names its rate-limit bucket (`key`) and the path parameter that scopes the bucket
(`major`, Discord's "top-level resource"). Handlers are plain functions of a parsed `Call`;
`app.py` does the HTTP plumbing (auth, faults, buckets, headers, the request log).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from . import oauth
from .calls import Call, Handler, Reply, Route, unauthorized
from .models import DiscordError, invalid_form
from .state import FakeDiscordState


def _body(call: Call) -> dict[str, Any]:
    if call.json is None:
        return {}
    if not isinstance(call.json, dict):
        raise DiscordError(400, "400: Bad Request", 0)
    return call.json


# --- users, application, gateway ----------------------------------------------------------


def users_me(call: Call) -> Reply:
    assert call.auth is not None
    state = call.state
    if call.auth.kind == "bot":
        with state.lock:
            return Reply(200, {**state.bot.to_private_json(with_email=False), "verified": True})
    if "identify" not in call.auth.scopes:
        raise unauthorized()
    with state.lock:
        user = state.users[call.auth.user_id]
        return Reply(200, user.to_private_json(with_email="email" in call.auth.scopes))


def users_me_guilds(call: Call) -> Reply:
    assert call.auth is not None
    state = call.state
    if call.auth.kind == "bearer" and "guilds" not in call.auth.scopes:
        raise unauthorized()
    with state.lock:
        if call.auth.user_id not in state.members:
            return Reply(200, [])
        return Reply(
            200,
            [
                {
                    "id": state.guild_id,
                    "name": state.guild_name,
                    "icon": None,
                    "banner": None,
                    "owner": call.auth.user_id == state.owner_id,
                    "permissions": "0",
                    "features": [],
                }
            ],
        )


def users_get(call: Call) -> Reply:
    return Reply(200, call.state.user_json(call.params["user_id"]))


def application_me(call: Call) -> Reply:
    state = call.state
    with state.lock:
        owner = state.users.get(state.owner_id) or state.bot
        return Reply(
            200,
            {
                "id": state.application_id,
                "name": state.config.application_name,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot": state.bot.to_json(),
                "bot_public": False,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": state.application_flags(),
                "owner": owner.to_json(),
                "team": None,
                "redirect_uris": list(state.config.redirect_uris),
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "tags": [],
                "approximate_guild_count": 1,
                "integration_types_config": {"0": {}},
            },
        )


def gateway_bot(call: Call) -> Reply:
    state = call.state
    with state.lock:
        remaining = max(0, 1000 - state.identify_count)
    return Reply(
        200,
        {
            "url": call.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": remaining,
                "reset_after": 86_400_000,
                "max_concurrency": 1,
            },
        },
    )


def gateway(call: Call) -> Reply:
    return Reply(200, {"url": call.gateway_url})


# --- guild ----------------------------------------------------------------------------------


def _guild(call: Call) -> FakeDiscordState:
    state = call.state
    state._guild(call.params["guild_id"])
    return state


def guild_get(call: Call) -> Reply:
    state = _guild(call)
    with_counts = call.query.get("with_counts", "").lower() == "true"
    return Reply(200, state.guild_json(with_counts=with_counts))


def guild_roles(call: Call) -> Reply:
    return Reply(200, _guild(call).role_list_json())


def guild_channels(call: Call) -> Reply:
    return Reply(200, _guild(call).guild_channels_json())


def member_get(call: Call) -> Reply:
    member = _guild(call).member_json(call.params["user_id"])
    if member is None:
        raise DiscordError(404, "Unknown Member", 10007)
    return Reply(200, member)


def _limit_query(call: Call, *, default: int, maximum: int) -> int:
    try:
        limit = int(call.query.get("limit", str(default)))
    except ValueError:
        raise invalid_form("limit", "NUMBER_TYPE_COERCE", "Value is not int.") from None
    if not 1 <= limit <= maximum:
        raise invalid_form(
            "limit",
            "NUMBER_TYPE_MAX" if limit > maximum else "NUMBER_TYPE_MIN",
            f"int value should be between 1 and {maximum}.",
        )
    return limit


def _snowflake_query(call: Call, name: str) -> int | None:
    text = call.query.get(name)
    if text is None:
        return None
    if not text.isdigit():
        raise invalid_form(name, "NUMBER_TYPE_COERCE", "Value is not snowflake.")
    return int(text)


def members_list(call: Call) -> Reply:
    state = _guild(call)
    limit = _limit_query(call, default=1, maximum=1000)
    return Reply(200, state.list_members(after=_snowflake_query(call, "after") or 0, limit=limit))


def member_put(call: Call) -> Reply:
    member = call.state.rest_add_member(
        call.params["guild_id"], call.params["user_id"], _body(call)
    )
    return Reply(204) if member is None else Reply(201, member)


def member_patch(call: Call) -> Reply:
    body = _body(call)
    member = call.state.rest_modify_member(call.params["guild_id"], call.params["user_id"], body)
    return Reply(200, member)


def member_delete(call: Call) -> Reply:
    call.state.rest_kick(call.params["guild_id"], call.params["user_id"])
    return Reply(204)


def role_put(call: Call) -> Reply:
    p = call.params
    call.state.rest_add_role(p["guild_id"], p["user_id"], p["role_id"])
    return Reply(204)


def role_delete(call: Call) -> Reply:
    p = call.params
    call.state.rest_remove_role(p["guild_id"], p["user_id"], p["role_id"])
    return Reply(204)


# --- channels and messages ----------------------------------------------------------------


def dm_create(call: Call) -> Reply:
    recipient = _body(call).get("recipient_id")
    if recipient is None:
        raise invalid_form("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
    return Reply(200, call.state.rest_open_dm(str(recipient)))


def channel_get(call: Call) -> Reply:
    state = call.state
    with state.lock:
        return Reply(200, state.channel_json(state._channel(call.params["channel_id"])))


def message_post(call: Call) -> Reply:
    return Reply(200, call.state.rest_send_message(call.params["channel_id"], _body(call)))


def messages_list(call: Call) -> Reply:
    """GET /channels/{c}/messages: ``limit`` 1-100 (default 50), ``after`` or ``before``."""
    limit = _limit_query(call, default=50, maximum=100)
    messages = call.state.rest_list_messages(
        call.params["channel_id"],
        after=_snowflake_query(call, "after"),
        before=_snowflake_query(call, "before"),
        limit=limit,
    )
    return Reply(200, messages)


def message_get(call: Call) -> Reply:
    p = call.params
    return Reply(200, call.state.rest_get_message(p["channel_id"], p["message_id"]))


def reaction_put(call: Call) -> Reply:
    p = call.params
    call.state.rest_react(p["channel_id"], p["message_id"], unquote(p["emoji"]), add=True)
    return Reply(204)


def reaction_delete(call: Call) -> Reply:
    p = call.params
    call.state.rest_react(p["channel_id"], p["message_id"], unquote(p["emoji"]), add=False)
    return Reply(204)


def _route(
    method: str, path: str, key: str, handler: Handler, *, major: str | None, auth: str = "bot"
) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(f"^{regex}/?$"), key, major, auth, handler)


def build_routes() -> list[Route]:
    g, c = "guild_id", "channel_id"
    member = "/guilds/{guild_id}/members/{user_id}"
    messages = "/channels/{channel_id}/messages"
    message = messages + "/{message_id}"
    return [
        _route("GET", "/users/@me", "users_me", users_me, major=None, auth="any"),
        _route("GET", "/users/@me/guilds", "users_me", users_me_guilds, major=None, auth="any"),
        _route("POST", "/users/@me/channels", "dm_create", dm_create, major=None),
        _route("GET", "/users/{user_id}", "users", users_get, major=None),
        _route("GET", "/oauth2/applications/@me", "application", application_me, major=None),
        _route("GET", "/gateway/bot", "gateway", gateway_bot, major=None),
        _route("GET", "/gateway", "gateway", gateway, major=None, auth="none"),
        _route("POST", "/oauth2/token", "oauth_token", oauth.token, major=None, auth="none"),
        _route(
            "POST", "/oauth2/token/revoke", "oauth_token", oauth.revoke, major=None, auth="none"
        ),
        _route("GET", "/guilds/{guild_id}", "guild", guild_get, major=g),
        _route("GET", "/guilds/{guild_id}/roles", "guild_roles", guild_roles, major=g),
        _route("GET", "/guilds/{guild_id}/channels", "guild_channels", guild_channels, major=g),
        _route("GET", "/guilds/{guild_id}/members", "guild_members_list", members_list, major=g),
        _route("GET", member, "guild_member_get", member_get, major=g),
        _route("PUT", member, "guild_member", member_put, major=g),
        _route("PATCH", member, "guild_member", member_patch, major=g),
        _route("DELETE", member, "guild_member", member_delete, major=g),
        _route("PUT", member + "/roles/{role_id}", "guild_member_role", role_put, major=g),
        _route("DELETE", member + "/roles/{role_id}", "guild_member_role", role_delete, major=g),
        _route("GET", "/channels/{channel_id}", "channel", channel_get, major=c),
        _route("POST", messages, "channel_messages", message_post, major=c),
        _route("GET", messages, "channel_messages_list", messages_list, major=c),
        _route("GET", message, "channel_message_get", message_get, major=c),
        _route("PUT", message + "/reactions/{emoji}/@me", "reactions", reaction_put, major=c),
        _route("DELETE", message + "/reactions/{emoji}/@me", "reactions", reaction_delete, major=c),
    ]


ROUTES: list[Route] = build_routes()


def match(method: str, api_path: str) -> tuple[Route | None, dict[str, str], bool]:
    """(route, params, path_known): path_known tells 405 from 404 when route is None."""
    path_known = False
    for route in ROUTES:
        found = route.pattern.match(api_path)
        if found is None:
            continue
        path_known = True
        if route.method == method:
            return route, found.groupdict(), True
    return None, {}, path_known
