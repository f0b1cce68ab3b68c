"""The aiohttp application: URL layout and the REST request pipeline.

    /api/v10/...        REST (also /api/v9/... and unversioned /api/...)
    /oauth2/authorize   OAuth consent (outside the API base, as on Discord)
    /gateway            the Gateway websocket
    /_control/...       control API for tests and the sandbox
    /                   the sandbox page

Every REST request goes: latency (`fakes.latency`, zero by default) -> route -> auth ->
injected fault -> global limit -> route bucket -> handler; every answer carries the bucket's
X-RateLimit-* headers, and lands in the request log with its status and decoded
X-Audit-Log-Reason.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from ..latency import Latency
from . import control, gateway, oauth, rest, sandbox
from .calls import GATEWAY_SOCKETS, LATENCY, STATE, Call, Reply, Route, unauthorized
from .models import DiscordError
from .ratelimit import normalise_api_path, rate_limited_body, rate_limited_headers
from .state import Auth, FakeDiscordState

# Body fields that are secrets: kept out of the request log (tests see the key, not the value).
REDACTED_FIELDS = {"access_token", "client_secret", "refresh_token", "token", "code"}


def json_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    if status == 204 or body is None:
        return web.Response(status=status, headers=headers)
    # Exactly "application/json" (no charset): discord.py parses a body only when the
    # Content-Type header equals that string.
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )


def _auth_ok(required: str, auth: Auth | None) -> bool:
    if required == "none":
        return True
    if auth is None:
        return False
    return required == "any" or required == auth.kind


def _redact(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: ("***" if k in REDACTED_FIELDS else v) for k, v in data.items()}
    return data


async def api(request: web.Request) -> web.Response:
    state = request.app[STATE]
    method = request.method
    raw_api_path = normalise_api_path(request.rel_url.raw_path)
    api_path = unquote(raw_api_path)
    route, params, path_known = rest.match(method, raw_api_path)
    auth = state.authenticate(request.headers.get("Authorization"))
    reason_header = request.headers.get("X-Audit-Log-Reason")
    text = await request.text() if request.can_read_body else ""
    await request.app[LATENCY].wait()

    headers: dict[str, str] = {}
    forced = False
    scope: str | None = None
    body_for_log: Any = None
    try:
        if route is None:
            if path_known:
                raise DiscordError(405, "405: Method Not Allowed", 0)
            raise DiscordError(404, "404: Not Found", 0)
        early, forced, scope = _gate(state, route, params, auth, method, api_path, headers)
        if early is not None:
            reply = early
        else:
            json_body, form = _parse_body(request.content_type, text)
            body_for_log = _redact(json_body if json_body is not None else form or None)
            call = Call(
                state=state,
                params=params,
                query=request.query,
                json=json_body,
                form=form,
                headers=request.headers,
                auth=auth,
                gateway_url=f"ws://{request.host}/gateway",
            )
            reply = route.handler(call)
    except DiscordError as exc:
        reply = Reply(exc.status, exc.body())

    state.record_request(
        {
            "at": time.time(),
            "method": method,
            "path": request.path,
            "api_path": api_path,
            "route": route.key if route else None,
            "query": dict(request.query),
            "status": reply.status,
            "reason": unquote(reason_header) if reason_header else None,
            "auth": auth.kind if auth else None,
            "json": body_for_log,
        },
        forced=forced,
        scope=scope,
    )
    return json_response(reply.status, reply.body, headers)


def _gate(
    state: FakeDiscordState,
    route: Route,
    params: dict[str, str],
    auth: Auth | None,
    method: str,
    api_path: str,
    headers: dict[str, str],
) -> tuple[Reply | None, bool, str | None]:
    """Auth, faults and rate limits. Fills `headers`; returns (early reply or None,
    whether that reply was a forced fault, its rate-limit scope)."""
    major = params.get(route.major, "") if route.major else ""
    if auth is not None and auth.kind == "bearer":
        major = f"{major}:user:{auth.user_id}"  # OAuth calls are limited per user
    now = time.monotonic()
    with state.lock:
        if not _auth_ok(route.auth, auth):
            headers.update(state.ratelimiter.peek(route.key, major, now).headers())
            raise unauthorized()
        fault = state.take_fault(method, api_path)
        if fault is not None:
            headers.update(state.ratelimiter.peek(route.key, major, now).headers())
            if fault.status == 429:
                headers.update(rate_limited_headers(fault.retry_after, scope=fault.scope))
                headers["X-RateLimit-Remaining"] = "0"
            return Reply(fault.status, fault.body()), True, fault.scope
        if auth is not None and auth.kind == "bot":
            wait = state.ratelimiter.take_global(now)
            if wait is not None:
                headers.update(rate_limited_headers(wait, scope="global"))
                return Reply(429, rate_limited_body(wait, is_global=True)), False, "global"
        ok, view = state.ratelimiter.take(route.key, major, now)
        headers.update(view.headers())
        if not ok:
            headers.update(rate_limited_headers(view.reset_after, scope="user"))
            return Reply(429, rate_limited_body(view.reset_after, is_global=False)), False, "user"
    return None, False, None


def _parse_body(content_type: str, text: str) -> tuple[Any, dict[str, str]]:
    if not text:
        return None, {}
    if content_type == "application/x-www-form-urlencoded":
        return None, dict(parse_qsl(text, keep_blank_values=True))
    try:
        return json.loads(text), {}
    except ValueError:
        raise DiscordError(400, "The request body contains invalid JSON.", 50109) from None


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[GATEWAY_SOCKETS]):
        await ws.close(code=1001, message=b"Server going away.")


def create_app(state: FakeDiscordState, latency: Latency | None = None) -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[STATE] = state
    app[LATENCY] = latency or Latency()
    app[GATEWAY_SOCKETS] = set()
    app.router.add_route("*", "/api/{tail:.*}", api)
    app.router.add_get("/oauth2/authorize", oauth.authorize)
    app.router.add_get("/gateway", gateway.handle)
    app.router.add_get("/gateway/", gateway.handle)
    control.register(app)
    sandbox.register(app)
    app.on_shutdown.append(_close_sockets)
    return app
