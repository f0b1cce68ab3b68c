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


# --- fake Stripe over HTTP ------------------------------------------------------------------


@pytest.fixture
def stripe_to_live_server(stripe_server: Any, live_server: Any) -> Any:
    """Deliveries from the fake go over HTTP to the gateway running in ``live_server``."""
    stripe_server.set_webhook(f"{live_server.url}/stripe/webhook/")
    return stripe_server


def recorded_events(srv: Any, types: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Events the fake has emitted so far, oldest first, as raw JSON from its /v1/events."""
    import requests

    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = requests.get(
            f"{srv.url}/v1/events",
            params=params,
            headers={"Authorization": f"Bearer {settings.STRIPE_SECRET_KEY}"},
            timeout=10,
        ).json()
        events.extend(page["data"])
        if not page["has_more"]:
            break
        params["starting_after"] = page["data"][-1]["id"]
    events.reverse()
    return [e for e in events if not types or e["type"] in types]


def pay_checkout(srv: Any, session_id: str, *, email: str, card: str = "4242424242424242") -> None:
    """Press "Pay" on the fake's hosted Checkout page, as the buyer's browser would."""
    import requests

    response = requests.post(
        f"{srv.url}/checkout/{session_id}",
        data={"email": email, "name": "Test Buyer", "card_number": card},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code in (200, 302, 303), response.text


# --- personas -------------------------------------------------------------------------------


def make_member(email: str) -> Any:
    """A signed-up member with a Stripe customer (created in the fake), no subscription yet."""
    import stripe
    from django.utils import timezone

    from members.models import Member, User

    user = User.objects.create_user(
        email, "correct horse battery", email_verified_at=timezone.now()
    )
    customer = stripe.Customer.create(email=email)
    return Member.objects.create(user=user, stripe_customer_id=customer.id)


def start_individual_checkout(member: Any) -> Any:
    import stripe

    return stripe.checkout.Session.create(
        mode="subscription",
        customer=member.stripe_customer_id,
        client_reference_id=str(member.pk),
        line_items=[{"price": settings.STRIPE_INDIVIDUAL_PRICE_ID, "quantity": 1}],
        metadata={"plan_type": "individual", "member_id": str(member.pk)},
        success_url=f"{settings.APP_URL}/dashboard/?checkout=success",
        cancel_url=f"{settings.APP_URL}/dashboard/?checkout=cancel",
    )


def start_company_checkout(member: Any, team: Any, *, owner_seats: int, team_seats: int) -> Any:
    import stripe

    items = [
        {"price": settings.STRIPE_OWNER_SEAT_PRICE_ID, "quantity": owner_seats},
        {"price": settings.STRIPE_TEAM_SEAT_PRICE_ID, "quantity": team_seats},
    ]
    metadata = {"plan_type": "company", "team_id": str(team.pk), "member_id": str(member.pk)}
    if not team.stripe_customer_id:
        # A team bills through a customer of its own, never the purchaser's personal one.
        team.stripe_customer_id = stripe.Customer.create(
            name=team.name, metadata={"team_id": str(team.pk)}
        ).id
        team.save(update_fields=["stripe_customer_id"])
    return stripe.checkout.Session.create(
        mode="subscription",
        customer=team.stripe_customer_id,
        client_reference_id=str(team.pk),
        line_items=[item for item in items if item["quantity"]],
        metadata=metadata,
        subscription_data={"metadata": metadata},
        success_url=f"{settings.APP_URL}/dashboard/?checkout=success",
        cancel_url=f"{settings.APP_URL}/dashboard/?checkout=cancel",
    )
