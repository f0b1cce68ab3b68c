"""Shared fixtures: personas, fake servers and helpers used across the suites."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache (rate-limit counters live there)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
