from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("gateway.health_urls")),
    path(settings.ADMIN_URL, admin.site.urls),
    path("stripe/", include("billing.urls")),
    # dj-stripe's own route, /stripe/webhook/<uuid>/, verifying with the same secret.
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    # /claim/, /login/discord/, /oauth/discord/callback/, /team/, /invite/<token>/
    path("", include("discordsync.urls")),
    path("", include("members.urls")),
]
