"""Billing fixtures: a signed-delivery helper and the fake Stripe server over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from fakes.stripe.webhooks import sign_payload


def stripe_signature(body: str, *, secret: str | None = None, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header made by the fake Stripe's signer (Stripe's algorithm)."""
    secret = settings.STRIPE_WEBHOOK_SECRET if secret is None else secret
    return sign_payload(body, secret, timestamp)


def post_webhook(client: Client, body: str, signature: str | None = None) -> Any:
    headers = {} if signature is None else {"Stripe-Signature": signature}
    return client.post(
        "/stripe/webhook/", data=body, content_type="application/json", headers=headers
    )


def deliver(client: Client, event: dict[str, Any]) -> Any:
    """Deliver one event as Stripe would: raw JSON body, freshly signed."""
    body = json.dumps(event)
    return post_webhook(client, body, stripe_signature(body))


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


@pytest.fixture
def inline_processing_off(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let the view store and wake the worker without running the task inline."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    yield
