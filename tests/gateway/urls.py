"""The project's URLs plus two endpoints the gateway tests drive."""

from __future__ import annotations

import structlog
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django_q.tasks import async_task

log = structlog.get_logger(__name__)


def enqueue(request: HttpRequest) -> JsonResponse:
    log.info("test_view_enqueued")
    task_id = async_task("tests.gateway.jobs.remember_context")
    return JsonResponse({"task_id": task_id})


def enqueue_failing(request: HttpRequest) -> JsonResponse:
    task_id = async_task("tests.gateway.jobs.charge_lapsed_member", request.GET["email"])
    return JsonResponse({"task_id": task_id})


def boom(request: HttpRequest) -> JsonResponse:
    owner_email = request.GET.get("email", "")
    webhook_secret = settings.STRIPE_WEBHOOK_SECRET
    bot_token = settings.DISCORD_BOT_TOKEN
    raise ValueError(f"cannot bill {owner_email}: {webhook_secret} / {bot_token}")


urlpatterns = [
    path("_test/enqueue/", enqueue),
    path("_test/enqueue-failing/", enqueue_failing),
    path("_test/boom/", boom),
    path("", include("gateway.urls")),
]
