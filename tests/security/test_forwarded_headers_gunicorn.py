"""The real gunicorn: the address in its access line and in Django's log lines is the one the
rate limits count — the proxy's X-Forwarded-For entry only on a connection from
``FORWARDED_ALLOW_IPS``, the connection's own address otherwise."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.processes import ROOT, base_env, free_port, wait_for_port

pytestmark = pytest.mark.slow

GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def _lines_for(log: Path, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Django's request_started line, gunicorn's access line) for ``path``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        started = [x for x in lines if x["event"] == "request_started" and path in x["request"]]
        access = [x for x in lines if x["logger"] == "gunicorn.access" and path in x["event"]]
        if started and access:
            return started[0], access[0]
        time.sleep(0.1)
    raise AssertionError(f"no log lines for {path}: {log.read_text()[-2000:]}")


@pytest.mark.parametrize(
    ("allow", "logged"),
    [("127.0.0.1", "198.51.100.7"), ("10.9.9.9", "127.0.0.1")],
    ids=["from-our-proxy", "straight-to-gunicorn"],
)
def test_both_log_lines_show_the_counted_address(tmp_path, allow, logged):
    port = free_port()
    log = tmp_path / "web.log"
    env = base_env(
        tmp_path / "gateway.sqlite3",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        TRUSTED_PROXY_COUNT="1",
        FORWARDED_ALLOW_IPS=allow,
    )
    env.pop("HOST", None)  # the default bind: loopback
    web = subprocess.Popen(
        [GUNICORN, "gateway.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=60)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/health/live",
            headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.7"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        started, access = _lines_for(log, "/health/live")
        assert started["ip"] == logged
        assert access["event"].startswith(f"{logged} ")
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=40)
