from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def community(request: HttpRequest) -> dict[str, object]:
    """Community branding for every page; nothing community-specific lives in templates."""
    return {
        "community_name": settings.COMMUNITY_NAME,
        "community_primary_color": settings.COMMUNITY_PRIMARY_COLOR,
        "community_accent_color": settings.COMMUNITY_ACCENT_COLOR,
        "sandbox": settings.SANDBOX,
    }
