"""Bench-only endpoints, next to the product's URLs (never routed in production).

- ``/bench/trivial/``: a Django view touching nothing — the ceiling of the stack.
- ``/bench/minimal/``: the least a durable acknowledgement can do — ``verify_header`` on the
  raw body, ``json.loads``, one INSERT.
- dj-stripe's stock ``/stripe/webhook/<uuid>/`` and our ``/stripe/webhook/`` come from
  ``gateway.urls`` unchanged.
"""

from __future__ import annotations

import json

import stripe
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

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


urlpatterns = [
    path("bench/trivial/", trivial),
    path("bench/minimal/", minimal),
    path("", include("gateway.urls")),
]
