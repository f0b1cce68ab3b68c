"""Request helpers every app's pages use: the real client address and the rate-limit page."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def peer_is_trusted_proxy(peer: str) -> bool:
    """True when the connection comes from one of ``FORWARDED_ALLOW_IPS`` (our proxies)."""
    if not settings.TRUSTED_PROXY_COUNT:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in settings.FORWARDED_ALLOW_IPS)


def client_ip(request: HttpRequest) -> str:
    """The real client address: the entry the outermost trusted proxy appended.

    With ``TRUSTED_PROXY_COUNT = n`` the last *n* hops of ``X-Forwarded-For`` were written by
    our own proxies; anything to the left of them was sent by the client and is not trusted.
    The header counts only on a connection from ``FORWARDED_ALLOW_IPS``: anyone else could
    write it themselves.
    """
    peer = request.META.get("REMOTE_ADDR", "")
    hops = settings.TRUSTED_PROXY_COUNT
    if hops and peer_is_trusted_proxy(peer):
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return peer


def rate_limited(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """django-ratelimit's view for a blocked request: a friendly page and status 429."""
    response = render(request, "429.html", status=429)
    response["Retry-After"] = "60"
    return response
