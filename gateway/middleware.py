"""Client IP and request-id handling behind a configurable number of trusted proxies
(the address itself is resolved by ``ops.http``)."""

from __future__ import annotations

import re
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponse

from ops.http import client_ip, peer_is_trusted_proxy

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
