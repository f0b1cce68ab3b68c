from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # Imported once apps are loaded: these modules import models (Django app loading).
        from billing import health  # noqa: F401 - registers the webhook backlog check
        from billing.stripe_client import configure_stripe

        configure_stripe()
