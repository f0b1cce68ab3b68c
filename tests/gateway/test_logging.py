"""Structured logs: one JSON object per line, a request id on every line of a request (and in
``X-Request-ID``), an inbound id honoured only behind a trusted proxy, no secrets."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import runpy
import uuid
from pathlib import Path

import pytest
import structlog
from django.conf import settings as django_settings

from tests.gateway import planted
from tests.observability import log_lines

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway.urls")]

ROOT = Path(__file__).resolve().parents[2]


def test_every_line_of_a_request_carries_the_id_returned_in_the_header(client, json_logs):
    response = client.get("/_test/enqueue/")

    request_id = response["X-Request-ID"]
    uuid.UUID(request_id)
    lines = log_lines(json_logs)
    events = {line["event"]: line for line in lines}
    assert {"request_started", "test_view_enqueued", "test_task_ran", "request_finished"} <= set(
        events
    )
    assert {line.get("request_id") for line in lines if line["event"] in events} == {request_id}
    assert events["test_view_enqueued"]["level"] == "info"
    assert events["test_view_enqueued"]["logger"] == "tests.gateway.urls"
    assert "timestamp" in events["test_view_enqueued"]


def test_two_requests_get_different_ids(client):
    first = client.get("/health/live")["X-Request-ID"]
    second = client.get("/health/live")["X-Request-ID"]
    assert first != second


def test_inbound_request_id_is_ignored_without_a_trusted_proxy(client, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    response = client.get("/health/live", HTTP_X_REQUEST_ID="forged-by-a-client")
    assert response["X-Request-ID"] != "forged-by-a-client"


def test_inbound_request_id_from_the_trusted_proxy_is_kept(client, settings, json_logs):
    settings.TRUSTED_PROXY_COUNT = 1
    response = client.get(
        "/_test/enqueue/",
        HTTP_X_REQUEST_ID="edge-4f2a-77",
        HTTP_X_FORWARDED_FOR="203.0.113.9",
    )
    assert response["X-Request-ID"] == "edge-4f2a-77"
    task_line = next(line for line in log_lines(json_logs) if line["event"] == "test_task_ran")
    assert task_line["request_id"] == "edge-4f2a-77"


def test_malformed_inbound_request_id_is_replaced_even_behind_the_proxy(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    response = client.get(
        "/health/live", HTTP_X_REQUEST_ID="bad id\nwith newline", HTTP_X_FORWARDED_FOR="1.2.3.4"
    )
    assert response["X-Request-ID"] != "bad id\nwith newline"
    uuid.UUID(response["X-Request-ID"])


def test_secrets_never_reach_a_log_line(json_logs, settings):
    settings.STRIPE_WEBHOOK_SECRET = planted.WEBHOOK_SECRET
    settings.DISCORD_BOT_TOKEN = planted.BOT_TOKEN
    log = structlog.get_logger("billing.webhooks")
    log.warning("signature_mismatch", stripe_signature="t=1,v1=abc", api_key="rk_test_123")
    log.error("discord_rejected", detail=f"token {planted.BOT_TOKEN} refused")
    logging.getLogger("stripe").error(
        "request failed: secret=%s header=%s", planted.WEBHOOK_SECRET, planted.BEARER
    )
    log.info("magic_link_opened", url=f"/login/magic/?token={planted.MAGIC_TOKEN}&next=/")

    output = json_logs.getvalue()
    for secret in (planted.WEBHOOK_SECRET, planted.BOT_TOKEN, planted.BEARER, planted.MAGIC_TOKEN):
        assert secret not in output
    assert "rk_test_123" not in output and "v1=abc" not in output
    lines = log_lines(json_logs)
    assert [line["event"] for line in lines][:2] == ["signature_mismatch", "discord_rejected"]
    assert lines[0]["stripe_signature"] == "[redacted]"
    assert "next=/" in lines[3]["url"]


def test_stdlib_exceptions_render_as_one_json_line(json_logs):
    try:
        raise KeyError("missing price")
    except KeyError:
        logging.getLogger("django.request").exception("Internal Server Error: /x")
    (line,) = log_lines(json_logs)
    assert line["level"] == "error"
    assert "KeyError: 'missing price'" in line["exception"]


def test_gunicorn_access_and_error_logs_use_the_same_json_formatter(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "json")
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    logging.config.dictConfig(config["logconfig_dict"])
    captured = io.StringIO()
    handler = logging.getLogger("gunicorn.access").handlers[0]
    original = handler.setStream(captured)
    try:
        logging.getLogger("gunicorn.error").info("Booting worker with pid: %s", 4242)
        logging.getLogger("gunicorn.access").info(
            '%(h)s "%(r)s" %(s)s', {"h": "10.0.0.1", "r": "GET /health HTTP/1.1", "s": "200"}
        )
    finally:
        handler.setStream(original)
        logging.config.dictConfig(django_settings.LOGGING)
    error_line, access_line = (json.loads(line) for line in captured.getvalue().splitlines())
    assert error_line["event"] == "Booting worker with pid: 4242"
    assert error_line["logger"] == "gunicorn.error"
    assert access_line["event"] == '10.0.0.1 "GET /health HTTP/1.1" 200'
    assert access_line["logger"] == "gunicorn.access"
