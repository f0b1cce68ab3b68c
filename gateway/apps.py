from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        from gateway import checks, tasks
        from gateway.sentry import init_sentry, process_name

        checks.register_all()
        tasks.connect()
        # Every process (gunicorn worker, qcluster, runbot, one-off command) loads Django
        # through here once; tests start Sentry themselves against a local server.
        if settings.DJANGO_ENV != "test":
            init_sentry(process_name())
