from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_webhook_endpoint(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    from billing.services import webhook_endpoint_sync

    webhook_endpoint_sync()


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from billing.stripe_client import configure_stripe

        configure_stripe()
        # After every migrate (deploys included), so a rotated STRIPE_WEBHOOK_SECRET reaches
        # dj-stripe's WebhookEndpoint row without a manual step.
        post_migrate.connect(
            _sync_webhook_endpoint, sender=self, dispatch_uid="billing_webhook_endpoint"
        )
