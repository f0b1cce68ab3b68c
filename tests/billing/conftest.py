"""Billing fixtures: a Stripe event, and the fake Stripe delivering to a live server."""

from __future__ import annotations

import time
from typing import Any

import pytest


@pytest.fixture
def stripe_event() -> dict[str, Any]:
    return {
        "id": "evt_test_webhook_0001",
        "object": "event",
        "api_version": "2026-08-26.dahlia",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "customer.subscription.updated",
        "data": {"object": {"id": "sub_test_0001", "object": "subscription"}},
    }


# --- fake Stripe over HTTP ------------------------------------------------------------------


@pytest.fixture
def stripe_to_live_server(stripe_server: Any, live_server: Any) -> Any:
    """Deliveries from the fake go over HTTP to the gateway running in ``live_server``."""
    stripe_server.set_webhook(f"{live_server.url}/stripe/webhook/")
    return stripe_server
