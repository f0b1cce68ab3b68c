"""``make run`` starts every process in sandbox mode and stops them all on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import ROOT, sandbox_env, wait_for_port

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_make_run_serves_the_sandbox_and_stops_cleanly(tmp_path: Path) -> None:
    env, port = sandbox_env(tmp_path)
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.devserver"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            wait_for_port(port, timeout=90)
            status, body = get(f"http://127.0.0.1:{port}/")
            assert status == 200
            assert b"The Revenue Council" in body
            # The landing page shows the plans priced from the fake Stripe's catalogue.
            assert b"99" in body

            # Readiness turns green once the worker and the bot have reported in.
            deadline = time.monotonic() + 90
            checks: dict = {}
            while time.monotonic() < deadline:
                status, body = get(f"http://127.0.0.1:{port}/health/ready")
                checks = json.loads(body)["checks"]
                if status == 200 and checks["worker"]["ok"] and checks["bot"]["ok"]:
                    break
                time.sleep(2)
            assert checks["worker"]["ok"] and checks["bot"]["ok"], checks

            output = log_path.read_text()
            assert f"running at http://127.0.0.1:{port}/" in output
            assert "staff login: staff@example.org / " in output
        finally:
            process.send_signal(signal.SIGTERM)
            exit_code = process.wait(timeout=60)
    assert exit_code == 0, log_path.read_text()[-3000:]
    text = log_path.read_text()
    assert "Shutting down: Master" in text  # gunicorn stopped gracefully
    assert "has stopped" in text  # qcluster stopped gracefully
    assert "bot_stopped" in text
