from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        # Imported once apps are loaded: these modules import models (Django app loading).
        from gateway import checks, tasks
        from gateway.schema import create_cache_tables
        from gateway.sentry import init_sentry, process_name
        from ops.admin_guard import guard_every_admin

        checks.register_all()
        # The admin (first in INSTALLED_APPS) has registered every app's ModelAdmins by now.
        guard_every_admin()

        # Sent after every migrate once per app with models (the receiver acts on one of them).
        post_migrate.connect(create_cache_tables, dispatch_uid="gateway_cache_tables")
        tasks.connect()
        # Every process (gunicorn worker, qcluster, runbot, one-off command) loads Django
        # through here once; tests start Sentry themselves against a local server.
        if settings.DJANGO_ENV != "test":
            init_sentry(process_name())


class GatewayAdminConfig(admin_apps.AdminConfig):
    """Django's admin with our site class (a second factor for staff, see staff_auth)."""

    default = False  # named in INSTALLED_APPS; GatewayConfig stays this module's default

    default_site = "gateway.staff_auth.GatewayAdminSite"
