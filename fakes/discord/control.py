"""The control API (`/_control/...`, JSON, no auth): what tests and the sandbox use to
arrange the world, inject faults, drive gateway events and read back what happened.

Every endpoint is a thin wrapper over a `FakeDiscordState` method of the same purpose, so
in-process tests can call the state directly instead.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .calls import LATENCY, STATE
from .models import DiscordError
from .state import FakeDiscordState

ControlHandler = Callable[[FakeDiscordState, web.Request, dict[str, Any]], Any]

FAULT_KINDS = {
    "429": 429,
    "rate_limit": 429,
    "5xx": 500,
    "500": 500,
    "502": 502,
    "503": 503,
    "504": 504,
    "403": 403,
    "404": 404,
    "401": 401,
}


def _endpoint(fn: ControlHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Parse the JSON body, call `fn`, answer its result as JSON (errors as 4xx JSON)."""

    async def handler(request: web.Request) -> web.Response:
        body: dict[str, Any] = {}
        if request.can_read_body:
            text = await request.text()
            if text.strip():
                try:
                    body = json.loads(text)
                except ValueError:
                    return web.json_response({"error": "body is not JSON"}, status=400)
                if not isinstance(body, dict):
                    return web.json_response({"error": "body must be an object"}, status=400)
        try:
            result = fn(request.app[STATE], request, body)
        except DiscordError as exc:
            return web.json_response({"error": exc.message, "code": exc.code}, status=exc.status)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": f"bad request: {exc!r}"}, status=400)
        return web.json_response({"ok": True} if result is None else result)

    return handler


def _state(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    return state.snapshot(member_limit=int(request.query.get("members", "500")))


def _reset(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    state.reset(reidentify=bool(body.get("reidentify", False)))


def _oauth_user(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    user_id = body.get("user_id")
    state.set_oauth_user(None if user_id is None else str(user_id), deny=bool(body.get("deny")))


def _expire_token(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    state.expire_token(str(body["access_token"]))


def _add_user(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    return state.add_user(**body)


def _user(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    return state.user_info(request.match_info["user_id"])


def _dms_closed(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    state.set_dms_closed(request.match_info["user_id"], bool(body.get("closed", True)))


def _user_flags(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    state.set_user_flags(
        request.match_info["user_id"], dms_closed=body.get("dms_closed"), banned=body.get("banned")
    )


def _join(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    return state.add_member(str(body["user_id"]), [str(r) for r in body.get("roles", [])])


def _leave(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    state.remove_member(request.match_info["user_id"])


def _set_roles(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    roles = [str(r) for r in body["roles"]]
    return state.set_member_roles(request.match_info["user_id"], roles)


def _seed_members(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    return state.seed_members(
        int(body["count"]),
        [str(r) for r in body.get("role_ids", [])],
        start_id=body.get("start_id"),
    )


def _post_message(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    return state.post_message(
        str(body["channel_id"]),
        str(body["author_id"]),
        str(body["content"]),
        message_reference=body.get("message_reference"),
        thread=body.get("thread"),
    )


def _edit_message(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    return state.edit_message(request.match_info["message_id"], str(body["content"]))


def _messages(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    if "dm_user_id" in request.query:
        return state.dms_for(request.query["dm_user_id"])
    return state.channel_messages(request.query["channel_id"])


def _faults(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    return state.snapshot(member_limit=0)["faults"]


def _add_fault(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    status = body.get("status")
    if status is None:
        status = FAULT_KINDS[str(body.get("kind", "429"))]
    seconds = body.get("seconds")
    count = body.get("count", None if seconds is not None else 1)
    fault_id = state.add_fault(
        str(body.get("path_prefix", "/")),
        int(status),
        method=body.get("method"),
        count=None if count is None else int(count),
        seconds=None if seconds is None else float(seconds),
        retry_after=float(body.get("retry_after", 0.5)),
        is_global=bool(body.get("global", False)),
        code=body.get("code"),
        message=body.get("message"),
    )
    return {"id": fault_id}


def _clear_faults(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    state.clear_faults()


def _bot_role_position(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    state.set_bot_role_position(int(body["position"]))
    return {"bot_top_position": state.bot_top_position()}


def _bot_permissions(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    state.set_bot_permissions(int(body["permissions"]))


def _rate_limits(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    for key, (limit, per) in body.get("routes", {}).items():
        state.set_rate_limit(key, int(limit), float(per))
    if "global" in body:
        limit, per = body["global"]
        state.set_global_rate_limit(int(limit), float(per))
    return state.snapshot(member_limit=0)["rate_limits"]


def _config(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    state.set_config(**body)
    return state.snapshot(member_limit=0)["config"]


def _requests(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    q = request.query
    return state.requests(
        method=q.get("method"),
        path_prefix=q.get("path_prefix"),
        route=q.get("route"),
        status=int(q["status"]) if "status" in q else None,
    )


def _clear_requests(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    state.clear_requests()


def _gateway_close(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    closed = state.gateway_close(
        code=int(body.get("code", 4000)), session_id=body.get("session_id")
    )
    return {"closed": closed}


def _gateway_reconnect(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    return {"sent": state.gateway_reconnect(session_id=body.get("session_id"))}


def _gateway_invalidate(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    sent = state.gateway_invalidate(
        resumable=bool(body.get("resumable", False)), session_id=body.get("session_id")
    )
    return {"sent": sent}


def _gateway_dispatch(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    """Escape hatch: dispatch any event payload as-is."""
    state.dispatch(str(body["event"]), dict(body["data"]), intent=body.get("intent"))


def _latency(state: FakeDiscordState, request: web.Request, body: dict[str, Any]) -> Any:
    """The delay added to every REST call (`fakes.latency`); POST changes it."""
    latency = request.app[LATENCY]
    if request.method == "POST":
        return latency.configure(ms=body.get("ms"), jitter_ms=body.get("jitter_ms"))
    return latency.as_dict()


def register(app: web.Application) -> None:
    routes: list[tuple[str, str, ControlHandler]] = [
        ("GET", "/state", _state),
        ("POST", "/reset", _reset),
        ("POST", "/oauth/current_user", _oauth_user),
        ("POST", "/oauth/expire_token", _expire_token),
        ("POST", "/users", _add_user),
        ("GET", "/users/{user_id}", _user),
        ("POST", "/users/{user_id}/dms_closed", _dms_closed),
        ("POST", "/users/{user_id}/flags", _user_flags),
        ("POST", "/guild/members", _join),
        ("DELETE", "/guild/members/{user_id}", _leave),
        ("PUT", "/guild/members/{user_id}/roles", _set_roles),
        ("POST", "/seed_members", _seed_members),
        ("GET", "/messages", _messages),
        ("POST", "/messages", _post_message),
        ("PATCH", "/messages/{message_id}", _edit_message),
        ("GET", "/faults", _faults),
        ("POST", "/faults", _add_fault),
        ("DELETE", "/faults", _clear_faults),
        ("GET", "/latency", _latency),
        ("POST", "/latency", _latency),
        ("POST", "/bot_role_position", _bot_role_position),
        ("POST", "/bot_permissions", _bot_permissions),
        ("POST", "/rate_limits", _rate_limits),
        ("POST", "/config", _config),
        ("GET", "/requests", _requests),
        ("POST", "/requests/clear", _clear_requests),
        ("POST", "/gateway/close", _gateway_close),
        ("POST", "/gateway/reconnect", _gateway_reconnect),
        ("POST", "/gateway/invalidate", _gateway_invalidate),
        ("POST", "/gateway/dispatch", _gateway_dispatch),
    ]
    for method, path, fn in routes:
        app.router.add_route(method, "/_control" + path, _endpoint(fn))
