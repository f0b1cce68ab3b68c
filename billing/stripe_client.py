"""The one place stripe-python (and with it dj-stripe) is configured.

stripe-python keeps its configuration in module globals, which dj-stripe also uses, so one call
at start-up (``BillingConfig.ready``) points every Stripe call in the process at
``STRIPE_API_BASE`` with an explicit timeout and bounded network retries. Tests and the sandbox
call ``configure_stripe(api_base=...)`` again to aim at a fake server on a random port.
"""

from __future__ import annotations

import stripe
from django.conf import settings


def configure_stripe(*, api_base: str | None = None) -> None:
    """Apply key, API base, timeout and retry policy to stripe-python's globals."""
    stripe.api_key = settings.STRIPE_SECRET_KEY
    stripe.api_base = (api_base or settings.STRIPE_API_BASE).rstrip("/")
    # stripe-python retries connection errors, 409s and 5xx with backoff, and sends an
    # idempotency key on retried POSTs, so a retried write is applied once.
    stripe.max_network_retries = settings.STRIPE_MAX_NETWORK_RETRIES
    stripe.default_http_client = stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS)
    stripe.enable_telemetry = False
