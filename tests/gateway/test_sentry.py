"""Sentry: errors in views and in worker tasks reach the ingest server; secrets, tokens,
cookies and email addresses never do. The DSN points at a real local HTTP server."""

from __future__ import annotations

import pytest
import sentry_sdk
from django.test import Client
from django_q.tasks import async_task

from gateway.sentry import init_sentry, process_name, scrub, scrub_event
from tests.gateway import planted

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway.urls")]


@pytest.fixture
def planted_settings(settings):
    settings.STRIPE_WEBHOOK_SECRET = planted.WEBHOOK_SECRET
    settings.DISCORD_BOT_TOKEN = planted.BOT_TOKEN


def assert_nothing_planted(raw: bytes) -> None:
    for secret in planted.ALL:
        assert secret.encode() not in raw, f"{secret!r} reached Sentry"


def test_view_error_is_reported_without_secrets(sentry_on, planted_settings):
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = planted.SESSION_COOKIE
    response = client.get(
        f"/_test/boom/?email={planted.MEMBER_EMAIL}&token={planted.MAGIC_TOKEN}",
        HTTP_AUTHORIZATION=planted.BEARER,
        HTTP_STRIPE_SIGNATURE="t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff",
    )
    assert response.status_code == 500
    sentry_sdk.flush(timeout=5)

    (event,) = sentry_on.wait_for_events(1)
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert "[Filtered]" in exception["value"]
    assert event["environment"] == "test"
    assert event["tags"]["process"] == "web"
    assert event["tags"]["request_id"] == response["X-Request-ID"]
    assert event["transaction"] == "/_test/boom/"
    assert "t=1700000000" not in str(event)
    assert_nothing_planted(sentry_on.raw())


def test_task_error_in_the_worker_is_reported_without_secrets(sentry_on, planted_settings):
    with pytest.raises(RuntimeError):
        # Inline mode runs django-q2's own worker loop, whose except block reports the error.
        async_task("tests.gateway.jobs.charge_lapsed_member", planted.MEMBER_EMAIL)
    sentry_sdk.flush(timeout=5)

    (event,) = sentry_on.wait_for_events(1)
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    frames = exception["stacktrace"]["frames"]
    assert frames[-1]["function"] == "charge_lapsed_member"
    assert frames[-1]["vars"]["webhook_secret"] == "[Filtered]"
    assert event["tags"]["request_id"]
    assert_nothing_planted(sentry_on.raw())


def test_error_log_lines_become_events_without_secrets(sentry_on, planted_settings):
    import structlog

    structlog.get_logger("billing.webhooks").error(
        "stripe_rejected", detail=f"{planted.MEMBER_EMAIL} {planted.WEBHOOK_SECRET}"
    )
    sentry_sdk.flush(timeout=5)
    sentry_on.wait_for_events(1)
    assert_nothing_planted(sentry_on.raw())


def test_sentry_stays_off_without_a_dsn(settings, sentry_ingest):
    settings.SENTRY_DSN = ""
    assert init_sentry("worker") is False
    assert not sentry_sdk.get_client().is_active()


def test_scrub_handles_nested_payloads():
    event = {
        "request": {
            "headers": [["Authorization", "Basic dXNlcjpwYXNz"], ["Accept", "text/html"]],
            "cookies": {"sessionid": "abc", "csrftoken": "def"},
            "query_string": "token=abcdefgh&page=2",
        },
        "extra": {"note": "reply to someone@example.com", "count": 3},
        "vars": {"result": ["charge failed, secret whsec_abc123", False]},
    }
    assert scrub(event) == {
        "request": {
            "headers": [["Authorization", "[Filtered]"], ["Accept", "text/html"]],
            "cookies": "[Filtered]",
            "query_string": "token=[redacted]&page=2",
        },
        "extra": {"note": "reply to [Filtered]", "count": 3},
        "vars": {"result": ["charge failed, secret [redacted]", False]},
    }


def test_the_monitors_echo_of_a_failed_task_is_not_sent_twice():
    echo = {
        "logger": "django-q",
        "logentry": {"message": "Failed 'billing.tasks.billing_tick' (x) - boom : Traceback"},
    }
    other = {"logger": "django-q", "logentry": {"message": "reincarnated worker Process-1"}}
    assert scrub_event(echo, {}) is None
    assert scrub_event(other, {})["logentry"] == other["logentry"]


@pytest.mark.parametrize(
    ("argv", "process"),
    [
        (["/srv/.venv/bin/gunicorn", "gateway.wsgi"], "web"),
        (["manage.py", "qcluster"], "worker"),
        (["manage.py", "runbot"], "bot"),
        (["manage.py", "reconcile", "--fix"], "command"),
    ],
)
def test_each_process_reports_under_its_own_name(argv, process):
    assert process_name(argv) == process
