"""Reconciliation runs in its own small world (``tests/gateway/reconcile/world.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.reconcile.world import World


@pytest.fixture
def world(stripe_server: Any, discord: Any, db: Any, settings: Any) -> World:
    settings.ADMIN_EMAIL = "ops@example.com"
    return World(stripe=stripe_server, discord=discord)
