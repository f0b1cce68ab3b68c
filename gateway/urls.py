from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from gateway import staff_auth
from gateway.admin_site import admin_login, dashboard

urlpatterns = [
    path("", include("gateway.health_urls")),
    # In front of the admin's own routes: the rate-limited login and the staff dashboard.
    path(f"{settings.ADMIN_URL}login/", admin_login, name="admin_login"),
    path(f"{settings.ADMIN_URL}2fa/setup/", staff_auth.setup, name="admin_2fa_setup"),
    path(
        f"{settings.ADMIN_URL}dashboard/", admin.site.admin_view(dashboard), name="admin_dashboard"
    ),
    path(settings.ADMIN_URL, admin.site.urls),
    # /stripe/webhook/, /dashboard/, /billing/, /checkout/individual/, /company/, /team/
    path("", include("billing.urls")),
    # /claim/, /login/discord/, /oauth/discord/callback/, /invite/<token>/
    path("", include("discordsync.urls")),
    path("", include("members.urls")),
]
