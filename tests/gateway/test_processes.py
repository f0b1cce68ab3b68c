"""The real web and worker processes: gunicorn with ``gunicorn.conf.py`` and ``qcluster``,
on a file database, with JSON logs and Sentry pointed at a local ingest server.

Proves over real HTTP and real process boundaries that the request id returned to the
client is the one on the worker's log lines for the task that request enqueued, that both
processes report errors to Sentry, and that no planted secret reaches a log or an envelope.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway import planted
from tests.processes import ROOT, base_env, free_port, sync_tables, wait_for_port, wait_until

pytestmark = pytest.mark.slow

GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


@pytest.fixture
def stack(tmp_path: Path, sentry_ingest) -> Iterator[dict[str, Any]]:
    database = tmp_path / "gateway.sqlite3"
    port = free_port()
    env = base_env(
        database,
        DJANGO_SETTINGS_MODULE="tests.gateway.process_settings",
        SENTRY_DSN=sentry_ingest.dsn,
        STRIPE_WEBHOOK_SECRET=planted.WEBHOOK_SECRET,
        DISCORD_BOT_TOKEN=planted.BOT_TOKEN,
        # Development talks only to services on this machine; nothing here calls Discord.
        DISCORD_API_BASE="http://127.0.0.1:9/api/v10",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        Q_WORKERS="1",
    )
    sync_tables(env, timeout=120)
    logs = {"web": tmp_path / "web.log", "worker": tmp_path / "worker.log"}
    processes = {
        "worker": subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=logs["worker"].open("w"),
            stderr=subprocess.STDOUT,
        ),
        "web": subprocess.Popen(
            [GUNICORN, "gateway.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=logs["web"].open("w"),
            stderr=subprocess.STDOUT,
        ),
    }
    try:
        wait_for_port(port, timeout=60)
        yield {"url": f"http://127.0.0.1:{port}", "logs": logs, "ingest": sentry_ingest}
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                raise AssertionError(f"{name} did not stop on SIGTERM") from None


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def test_request_id_sentry_and_scrubbing_across_web_and_worker(stack):
    logs, ingest = stack["logs"], stack["ingest"]

    status, headers = get(f"{stack['url']}/_test/enqueue/")
    assert status == 200
    request_id = headers["X-Request-ID"]

    task_line = wait_until(
        lambda: next(
            (line for line in json_lines(logs["worker"]) if line["event"] == "test_task_ran"),
            None,
        ),
        timeout=30,
        what="the worker to run the task",
    )
    assert task_line["request_id"] == request_id
    assert task_line["task_name"]
    web_lines = [line for line in json_lines(logs["web"]) if line.get("request_id") == request_id]
    assert {"request_started", "test_view_enqueued", "request_finished"} <= {
        line["event"] for line in web_lines
    }
    access = wait_until(
        lambda: [
            line
            for line in json_lines(logs["web"])
            if line["logger"] == "gunicorn.access" and "/_test/enqueue/" in line["event"]
        ],
        timeout=10,
        what="the access log line",
    )
    assert f"request_id={request_id}" in access[0]["event"]

    # An error in a view, with secrets in the URL, headers, cookies, message and locals.
    status, headers = get(
        f"{stack['url']}/_test/boom/?email={planted.MEMBER_EMAIL}&token={planted.MAGIC_TOKEN}",
        headers={
            "Authorization": planted.BEARER,
            "Cookie": f"sessionid={planted.SESSION_COOKIE}",
            "Stripe-Signature": "t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e7",
        },
    )
    assert status == 500
    boom_id = headers["X-Request-ID"]
    # And an error in a task the worker runs.
    status, _ = get(f"{stack['url']}/_test/enqueue-failing/?email={planted.MEMBER_EMAIL}")
    assert status == 200

    def reported() -> dict[str, dict[str, Any]]:
        found = {}
        for event in ingest.events():
            for value in event.get("exception", {}).get("values", []):
                found.setdefault(value["type"], event)
        return found if {"ValueError", "RuntimeError"} <= set(found) else {}

    events = wait_until(reported, timeout=30, what="Sentry events from web and worker")
    web_event, worker_event = events["ValueError"], events["RuntimeError"]
    assert web_event["tags"]["process"] == "web"
    assert web_event["tags"]["request_id"] == boom_id
    assert web_event["environment"] == "development"
    assert web_event["request"]["url"].endswith("/_test/boom/")
    assert web_event["request"]["headers"]["Authorization"] == "[Filtered]"
    assert worker_event["tags"]["process"] == "worker"
    assert worker_event["tags"]["request_id"]

    # Sentry gets neither secrets nor personal data; logs get no secrets (an email address in
    # a log line is how an operator finds a member's trail).
    sent = ingest.raw()
    logged = logs["web"].read_bytes() + logs["worker"].read_bytes()
    for secret in planted.ALL:
        assert secret.encode() not in sent, f"{secret!r} reached Sentry"
        if secret != planted.MEMBER_EMAIL:
            assert secret.encode() not in logged, f"{secret!r} reached a log line"
    assert b"v1=5257a869" not in sent + logged
    assert all(line.startswith(b"{") for line in logged.splitlines() if line.strip())
