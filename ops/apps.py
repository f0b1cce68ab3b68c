from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate, post_save


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Imported once apps are loaded: these modules import models (Django app loading).
        from ops import health  # noqa: F401 - registers the readiness checks
        from ops.models import GatewayConfig
        from ops.schedules import sync_after_config_change, sync_after_migrate

        # After every migrate the schedules match the code, so a deploy cannot forget them.
        post_migrate.connect(sync_after_migrate, sender=self, dispatch_uid="ops.schedules")
        post_save.connect(
            sync_after_config_change, sender=GatewayConfig, dispatch_uid="ops.schedules.config"
        )
