"""Bench-only endpoints, next to the product's URLs (never routed in production).

- ``/bench/trivial/``: a Django view touching nothing — the ceiling of the stack.
- ``/bench/minimal/``: the least a durable acknowledgement can do — ``verify_header`` on the
  raw body, ``json.loads``, one INSERT.
- ``/stripe/webhook/<uuid>/``: dj-stripe's stock webhook view, for comparison only. The
  product does not mount it (it stores events without running our handlers); the bench
  creates the ``WebhookEndpoint`` row it verifies with (``stock_webhook_endpoint``).
- our ``/stripe/webhook/`` comes from ``gateway.urls`` unchanged.
"""

from __future__ import annotations

import json

import stripe
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from djstripe.enums import WebhookEndpointStatus, WebhookEndpointValidation
from djstripe.models import WebhookEndpoint

from bench.schema import BENCH_TABLE


@csrf_exempt
def trivial(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"received": true}', content_type="application/json")


@csrf_exempt
def minimal(request: HttpRequest) -> JsonResponse:
    payload = request.body.decode("utf-8")
    try:
        stripe.WebhookSignature.verify_header(
            payload, request.headers.get("Stripe-Signature", ""), settings.STRIPE_WEBHOOK_SECRET
        )
    except stripe.SignatureVerificationError:
        return JsonResponse({"error": "invalid signature"}, status=400)
    event = json.loads(payload)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {BENCH_TABLE} (event_id, type, body) VALUES (%s, %s, %s) "  # noqa: S608
            "ON CONFLICT (event_id) DO NOTHING",
            [event["id"], event["type"], payload],
        )
    return JsonResponse({"received": True})


def stock_webhook_endpoint() -> str:
    """The row dj-stripe's stock view verifies with (the bench's secret); returns its uuid."""
    endpoint, _created = WebhookEndpoint.objects.get_or_create(
        id="we_bench_stock",
        defaults={
            "livemode": False,
            "enabled_events": ["*"],
            "status": WebhookEndpointStatus.enabled,
            "url": f"{settings.APP_URL}/stripe/webhook/",
            "secret": settings.STRIPE_WEBHOOK_SECRET,
            "djstripe_validation_method": WebhookEndpointValidation.verify_signature,
        },
    )
    return str(endpoint.djstripe_uuid)


urlpatterns = [
    path("bench/trivial/", trivial),
    path("bench/minimal/", minimal),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("", include("gateway.urls")),
]
