from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("gateway.health_urls")),
    path(settings.ADMIN_URL, admin.site.urls),
    path("stripe/", include("billing.urls")),
    path("oauth/", include("discordsync.urls")),
    path("", include("members.urls")),
]
