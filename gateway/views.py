from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def rate_limited(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """django-ratelimit's view for a blocked request: a friendly page and status 429."""
    response = render(request, "429.html", status=429)
    response["Retry-After"] = "60"
    return response
