"""OAuth2: the consent page (`/oauth2/authorize`) and the token endpoint.

The authorize URL lives outside the API base, as on Discord (`discord.com/oauth2/authorize`
vs `discord.com/api/v10/oauth2/token`), so the project's two settings stay distinct. Consent
is automatic for the "current test user" so tests need no browser; with no current user (the
sandbox's choice) a small page lets a person pick who they are.
"""

from __future__ import annotations

import base64
import binascii
import time
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from .calls import STATE, Call, Reply
from .models import DiscordError
from .state import EXPECTED_SCOPES, FakeDiscordState, OAuthError

AUTHORIZE_PARAMS = ("client_id", "redirect_uri", "response_type", "scope", "state", "prompt")


def _with_query(url: str, params: dict[str, str]) -> str:
    """Append params to a URL that may already carry a query string."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _error_page(status: int, message: str) -> web.Response:
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>Authorization error - fake Discord</title>"
        "<link rel='stylesheet' href='/sandbox.css'></head><body><main>"
        f"<h1>Authorization error</h1><p role='alert'>{escape(message)}</p></main></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html")


async def authorize(request: web.Request) -> web.StreamResponse:
    """GET /oauth2/authorize: validate, then consent as the current (or chosen) user and
    302 back to `redirect_uri?code=...&state=...` (or `?error=access_denied&state=...`).
    Logged in the request log (route "oauth_authorize") like API calls."""
    state: FakeDiscordState = request.app[STATE]
    try:
        response = _authorize(request, state)
    except web.HTTPException as exc:
        _log(state, request, exc.status)
        raise
    _log(state, request, response.status)
    return response


def _log(state: FakeDiscordState, request: web.Request, status: int) -> None:
    entry = {
        "at": time.time(),
        "method": request.method,
        "path": request.path,
        "api_path": None,
        "route": "oauth_authorize",
        "query": dict(request.query),
        "status": status,
        "reason": None,
        "auth": None,
        "json": None,
    }
    state.record_request(entry, forced=False, scope=None)


def _authorize(request: web.Request, state: FakeDiscordState) -> web.Response:
    q = request.query
    client_id = q.get("client_id", "")
    redirect_uri = q.get("redirect_uri", "")
    scopes = frozenset(q.get("scope", "").split())
    with state.lock:
        if client_id != state.application_id:
            return _error_page(400, "Unknown application (client_id).")
        if q.get("response_type") != "code":
            return _error_page(400, "Unsupported response_type; only 'code' is supported.")
        allowed = state.config.redirect_uris
        if not redirect_uri or (allowed and redirect_uri not in allowed):
            return _error_page(400, "Invalid OAuth2 redirect_uri.")
        unknown = scopes - EXPECTED_SCOPES
        if not scopes or unknown:
            return _error_page(400, f"Invalid scope: {' '.join(sorted(unknown)) or '(none)'}.")
        user_id = q.get("fake_user") or state.oauth_current_user
        deny = q.get("fake_decision") == "deny" or (state.oauth_deny and "fake_user" not in q)
        if user_id is not None and user_id not in state.users:
            return _error_page(400, f"Unknown fake user {user_id}.")

    back = {"state": q["state"]} if "state" in q else {}
    if deny:
        denied = {"error": "access_denied", "error_description": "The resource owner denied"}
        raise web.HTTPFound(_with_query(redirect_uri, {**denied, **back}))
    if user_id is None:
        return _chooser(state, q)
    code = state.issue_code(
        user_id=user_id, client_id=client_id, redirect_uri=redirect_uri, scopes=scopes
    )
    raise web.HTTPFound(_with_query(redirect_uri, {"code": code, **back}))


def _chooser(state: FakeDiscordState, query: Any) -> web.Response:
    """The sandbox's consent page: one button per human user, plus Cancel."""
    hidden = "".join(
        f"<input type='hidden' name='{name}' value='{escape(query[name], quote=True)}'>"
        for name in AUTHORIZE_PARAMS
        if name in query
    )
    with state.lock:
        humans = [u for u in state.users.values() if not u.bot][:50]
        rows = "".join(
            "<li><form method='get' action='/oauth2/authorize'>"
            f"{hidden}<input type='hidden' name='fake_user' value='{escape(u.id)}'>"
            f"<button type='submit'>Authorize as {escape(u.global_name or u.username)}"
            f" (@{escape(u.username)})</button></form></li>"
            for u in humans
        )
        app_name = state.config.application_name
    scopes = escape(query.get("scope", ""))
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>Authorize - fake Discord</title>"
        "<link rel='stylesheet' href='/sandbox.css'></head><body><main>"
        f"<h1>{escape(app_name)} wants to access your account</h1>"
        f"<p>Requested scopes: <code>{scopes}</code></p>"
        "<h2 id='who'>Who are you?</h2>"
        f"<ul aria-labelledby='who' class='choices'>{rows}</ul>"
        "<form method='get' action='/oauth2/authorize'>"
        f"{hidden}<input type='hidden' name='fake_decision' value='deny'>"
        "<button type='submit'>Cancel</button></form>"
        "</main></body></html>"
    )
    return web.Response(text=body, content_type="text/html")


def _client_credentials(call: Call) -> tuple[str, str]:
    """Client id and secret from HTTP Basic auth or the form, as Discord accepts both."""
    header = call.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return call.form.get("client_id", ""), call.form.get("client_secret", "")


def token(call: Call) -> Reply:
    """POST /api/v10/oauth2/token: authorization_code and refresh_token grants."""
    state = call.state
    try:
        client_id, secret = _client_credentials(call)
        if client_id != state.application_id or secret != state.config.client_secret:
            raise OAuthError("invalid_client", "Invalid client credentials.", status=401)
        grant_type = call.form.get("grant_type")
        if grant_type == "authorization_code":
            code = call.form.get("code")
            if not code:
                raise OAuthError("invalid_request", 'Missing "code" in request.')
            body = state.exchange_code(
                code=code, redirect_uri=call.form.get("redirect_uri", ""), client_id=client_id
            )
        elif grant_type == "refresh_token":
            body = state.refresh(call.form.get("refresh_token", ""))
        else:
            raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {grant_type!r}.")
    except OAuthError as exc:
        return Reply(exc.status, exc.body())
    return Reply(200, body)


def revoke(call: Call) -> Reply:
    """POST /api/v10/oauth2/token/revoke: forget an access or refresh token."""
    client_id, secret = _client_credentials(call)
    state = call.state
    if client_id != state.application_id or secret != state.config.client_secret:
        return Reply(401, {"error": "invalid_client"})
    value = call.form.get("token")
    if not value:
        raise DiscordError(400, "400: Bad Request", 0)
    state.revoke(value)
    return Reply(200, {})
