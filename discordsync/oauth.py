"""Discord OAuth (authorization-code grant) for every flow: link, login and seat invite.

One redirect URI, ``/oauth/discord/callback/``. What the callback is completing — the flow,
the member or invite it is bound to, and the state — lives in the server-side session, never
in a cookie or the query string (v1 let a browser choose which member got linked). A pending
flow is single-use and expires after ten minutes.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from discordsync.client import DiscordError, get_client
from members.models import DiscordUser
from ops.errors import ServiceError

SESSION_KEY = "discord_oauth"
STATE_TTL_SECONDS = 600
SCOPES = "identify guilds.join"


class Flow:
    LINK = "link"
    LOGIN = "login"
    INVITE = "invite"


class OAuthError(ServiceError):
    """The callback cannot be completed; the message is safe to show to the user."""


@dataclass(frozen=True)
class Pending:
    flow: str
    member_id: int | None
    invite_id: int | None


def redirect_uri() -> str:
    return settings.APP_URL + reverse("discordsync:oauth_callback")


def oauth_start(
    request: HttpRequest,
    *,
    flow: str,
    member_id: int | None = None,
    invite_id: int | None = None,
) -> str:
    """Record a pending flow in the session and return Discord's authorize URL."""
    state = secrets.token_urlsafe(32)
    request.session[SESSION_KEY] = {
        "state": state,
        "flow": flow,
        "member_id": member_id,
        "invite_id": invite_id,
        "expires_at": time.time() + STATE_TTL_SECONDS,
    }
    query = urlencode(
        {
            "client_id": settings.DISCORD_CLIENT_ID,
            "redirect_uri": redirect_uri(),
            "response_type": "code",
            "scope": SCOPES,
            "state": state,
            "prompt": "consent",
        }
    )
    return f"{settings.DISCORD_OAUTH_AUTHORIZE_URL}?{query}"


def oauth_consume(request: HttpRequest, *, state: str) -> Pending:
    """Take the pending flow out of the session (single use) and check the state against it."""
    pending: dict[str, Any] | None = request.session.pop(SESSION_KEY, None)
    if not pending or not state:
        raise OAuthError("This sign-in link is no longer valid. Please start again.")
    # compare_digest refuses non-ASCII str (TypeError → 500); compare the UTF-8 bytes.
    expected = str(pending.get("state", "")).encode()
    if not secrets.compare_digest(expected, state.encode("utf-8", "surrogatepass")):
        raise OAuthError("This sign-in link is no longer valid. Please start again.")
    if time.time() > float(pending.get("expires_at", 0)):
        raise OAuthError("This sign-in attempt took too long and expired. Please start again.")
    flow = pending.get("flow")
    if flow not in (Flow.LINK, Flow.LOGIN, Flow.INVITE):
        raise OAuthError("This sign-in link is no longer valid. Please start again.")
    return Pending(
        flow=flow, member_id=pending.get("member_id"), invite_id=pending.get("invite_id")
    )


def oauth_identify(code: str) -> tuple[DiscordUser, str]:
    """Exchange the code and read the user; returns the user and the short-lived token.

    The token is only used right away to add the user to the guild; it is never stored.
    """
    client = get_client()
    try:
        token = client.oauth_exchange_code(
            code=code,
            redirect_uri=redirect_uri(),
            client_id=settings.DISCORD_CLIENT_ID,
            client_secret=settings.DISCORD_CLIENT_SECRET,
        )
        access_token = str(token["access_token"])
        user = client.oauth_current_user(access_token)
    except (DiscordError, KeyError, TypeError) as exc:
        raise OAuthError("Discord did not confirm the sign-in. Please try again.") from exc
    return (
        DiscordUser(
            id=str(user["id"]),
            username=str(user.get("global_name") or user.get("username") or ""),
            avatar=str(user.get("avatar") or ""),
        ),
        access_token,
    )
