from __future__ import annotations

from django.urls import path

from billing.webhooks import stripe_webhook

app_name = "billing"

urlpatterns = [
    path("webhook/", stripe_webhook, name="stripe_webhook"),
]
