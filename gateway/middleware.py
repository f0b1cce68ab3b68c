"""Client IP and request-id handling behind a configurable number of trusted proxies."""

from __future__ import annotations

import re
from collections.abc import Callable

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "HTTP_X_REQUEST_ID"
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def client_ip(request: HttpRequest) -> str:
    """The real client address: the entry the outermost trusted proxy appended.

    With ``TRUSTED_PROXY_COUNT = n`` the last *n* hops of ``X-Forwarded-For`` were written by
    our own proxies; anything to the left of them was sent by the client and is not trusted.
    """
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "")


class RealClientIPMiddleware:
    """Resolve the client IP once and drop an inbound request id we must not trust."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.META["REMOTE_ADDR"] = client_ip(request)
        inbound = request.META.get(REQUEST_ID_HEADER, "")
        if not settings.TRUSTED_PROXY_COUNT or not VALID_REQUEST_ID.match(inbound):
            # django-structlog trusts the header; only our proxy may set it.
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
