"""Stripe and Discord as the gateway meets them, driven over HTTP like the real providers.

Stripe's side: signed webhook deliveries, the events the fake Stripe emitted, the hosted
Checkout page a buyer pays on, and the Checkout Sessions our pages would start. Discord's side:
the OAuth authorize page a member passes through when linking an account.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
import stripe
from django.conf import settings
from django.test import Client

from fakes.stripe.webhooks import sign_payload

# --- Stripe: webhook deliveries -------------------------------------------------------------


def stripe_signature(body: str, *, secret: str | None = None, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header made by the fake Stripe's signer (Stripe's algorithm)."""
    secret = settings.STRIPE_WEBHOOK_SECRET if secret is None else secret
    return sign_payload(body, secret, timestamp)


def post_webhook(client: Client, body: str, signature: str | None = None) -> Any:
    headers = {} if signature is None else {"Stripe-Signature": signature}
    return client.post(
        "/stripe/webhook/", data=body, content_type="application/json", headers=headers
    )


@contextlib.contextmanager
def worker_busy() -> Iterator[None]:
    """Deliveries pile up in the inbox while every worker is busy: the webhook's wake-ups go to
    the task broker instead of running inline (tests run tasks inline, ``Q_SYNC``). On exit the
    queued wake-ups are dropped; the caller then drains the pile as a worker coming free does."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    Conf.SYNC = False
    try:
        yield
    finally:
        Conf.SYNC = True
        get_broker().purge_queue()


def deliver(client: Client, event: dict[str, Any]) -> Any:
    """Deliver one event as Stripe would: raw JSON body, freshly signed."""
    body = json.dumps(event)
    return post_webhook(client, body, stripe_signature(body))


# --- Stripe: the fake's events and hosted Checkout ------------------------------------------


def recorded_events(srv: Any, types: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Events the fake has emitted so far, oldest first, as raw JSON from its /v1/events."""
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


def pay_checkout(
    srv: Any,
    session_id: str,
    *,
    email: str,
    card: str = "4242424242424242",
    **fields: str,
) -> None:
    """Press "Pay" on the fake's hosted Checkout page, as the buyer's browser would.

    ``fields``: more of the page's fields filled in, e.g. ``country`` and ``postal_code`` (the
    billing address Stripe Tax asks for), ``tax_id``, ``promotion_code``.
    """
    response = requests.post(
        f"{srv.url}/checkout/{session_id}",
        data={"email": email, "name": "Test Buyer", "card_number": card, **fields},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code in (200, 302, 303), response.text


# --- Stripe: Checkout Sessions as our pages start them ---------------------------------------


def start_individual_checkout(member: Any) -> Any:
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


# --- Stripe: the plan catalogue -------------------------------------------------------------

YEARLY = {"individual": 99000, "owner": 99000, "team": 49000}
PRODUCTS = {"individual": "prod_individual", "owner": "prod_owner_seat", "team": "prod_team_seat"}


def yearly_prices() -> dict[str, str]:
    """Yearly prices of the demo products, created in the fake Stripe, mirrored into dj-stripe
    with the monthly ones and added to the imported plans; returns their ids by role."""
    from billing.catalogue import prices_sync
    from billing.models import Plan, PlanPrice

    ids = {
        role: stripe.Price.create(
            product=PRODUCTS[role],
            unit_amount=amount,
            currency="usd",
            recurring={"interval": "year"},
        ).id
        for role, amount in YEARLY.items()
    }
    prices_sync(actor=None)
    for role, price_id in ids.items():
        kind = Plan.Kind.INDIVIDUAL if role == "individual" else Plan.Kind.COMPANY
        PlanPrice.objects.create(
            plan=Plan.objects.get(kind=kind), role=role, stripe_price_id=price_id
        )
    return ids


# --- Discord: OAuth -------------------------------------------------------------------------


def authorize(location: str) -> dict[str, str]:
    """Follow our redirect to the fake's authorize page over real HTTP; return the
    query Discord sends back to our callback (code and state, or error)."""
    response = requests.get(location, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    back = urlparse(response.headers["Location"])
    assert back.path == "/oauth/discord/callback/"
    return {k: v[0] for k, v in parse_qs(back.query).items()}
