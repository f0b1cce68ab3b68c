"""A fake Stripe server speaking Stripe's wire format (API version 2026-08-26.dahlia).

stripe-python and dj-stripe work against it unchanged. Used by the integration tests (over
real HTTP, see :class:`FakeStripeServer`) and by sandbox mode (``python -m fakes.stripe``).
Standard library and aiohttp only: no Django in here.
"""

from __future__ import annotations

from .catalogue import (
    DEMO_CATALOGUE,
    INDIVIDUAL_PRICE_ID,
    OWNER_SEAT_PRICE_ID,
    TEAM_SEAT_PRICE_ID,
)
from .objects import API_VERSION
from .server import FakeStripeServer
from .state import StripeState
from .webhooks import DeliveryOptions, WebhookDispatcher, sign_payload

__all__ = [
    "API_VERSION",
    "DEMO_CATALOGUE",
    "INDIVIDUAL_PRICE_ID",
    "OWNER_SEAT_PRICE_ID",
    "TEAM_SEAT_PRICE_ID",
    "DeliveryOptions",
    "FakeStripeServer",
    "StripeState",
    "WebhookDispatcher",
    "sign_payload",
]
