from django.urls import path

from ops import health

urlpatterns = [
    path("health", health.live, name="health"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
]
