"""Reads for role sync: which Discord role ids this gateway manages."""

from __future__ import annotations

from django.conf import settings


def managed_role_ids() -> dict[str, str]:
    """Configured Discord role id per managed role name (unset roles left out)."""
    return {name: role_id for name, role_id in settings.DISCORD_ROLE_IDS.items() if role_id}
