"""Client IP and request-id handling behind a configurable number of trusted proxies."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "HTTP_X_REQUEST_ID"
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# Headers only our own proxies may set; a client talking to gunicorn directly loses them.
FORWARDED_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_FORWARDED",
    "HTTP_X_REAL_IP",
    REQUEST_ID_HEADER,
)


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


class RealClientIPMiddleware:
    """Resolve the client IP once; drop forwarded headers and request ids we must not trust.

    Everything after this middleware — rate limits, the ``ip`` of log lines, Django's
    ``SECURE_PROXY_SSL_HEADER`` — sees the resolved address in ``REMOTE_ADDR`` and sees
    ``X-Forwarded-Proto`` only when our proxy sent it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        trusted = peer_is_trusted_proxy(request.META.get("REMOTE_ADDR", ""))
        request.META["REMOTE_ADDR"] = client_ip(request)
        if not trusted:
            for header in FORWARDED_HEADERS:
                request.META.pop(header, None)
        elif not VALID_REQUEST_ID.match(request.META.get(REQUEST_ID_HEADER, "")):
            # django-structlog trusts the header; only a well-formed one from our proxy counts.
            request.META.pop(REQUEST_ID_HEADER, None)
        return self.get_response(request)


class RequestIDHeaderMiddleware:
    """Return the request id (bound by django-structlog) in ``X-Request-ID``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            response["X-Request-ID"] = request_id
        return response
