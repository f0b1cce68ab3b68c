"""Real processes for the drills: gunicorn and qcluster on a private database, signed events.

The children use ``tests.gateway.process_settings`` (the project's settings, tables created
from the models, as ``--nomigrations`` does) so a drill pays seconds, not dj-stripe's minute
of migrations. Tests read results back with plain SQL; nothing of ours is mocked.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from fakes.stripe.webhooks import sign_payload
from tests.processes import ROOT, base_env, sync_tables

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
WEBHOOK_SECRET = "whsec_drill_0123456789abcdef"
INBOX = "billing_stripeeventinbox"


def drill_env(directory: Path, **extra: str) -> dict[str, str]:
    """A migrated SQLite database in ``directory`` and the environment to reach it."""
    database = directory / "gateway.sqlite3"
    env = base_env(
        database,
        DJANGO_SETTINGS_MODULE="tests.gateway.process_settings",
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        LOG_LEVEL="INFO",
        **extra,
    )
    sync_tables(env)
    return env


def database_path(env: dict[str, str]) -> Path:
    return Path(env["DATABASE_URL"].removeprefix("sqlite:///"))


def query(env: dict[str, str], sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database_path(env), timeout=20) as conn:
        return conn.execute(sql, params).fetchall()


def manage(env: dict[str, str], code: str) -> str:
    """Run ORM code in a child process against the child database; return its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


class Process:
    """One child process with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log: Path,
        *,
        group: bool = False,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.log_path = log
        self._log = log.open("ab")
        # A process group of its own lets a drill SIGKILL a process with all its children,
        # as the OOM killer or a power cut would.
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=group,
        )

    @classmethod
    def gunicorn(cls, env: dict[str, str], log: Path, name: str = "web") -> Process:
        return cls(name, [GUNICORN, "gateway.wsgi"], env, log)

    @classmethod
    def qcluster(cls, env: dict[str, str], log: Path, name: str = "worker") -> Process:
        return cls(name, [sys.executable, "manage.py", "qcluster"], env, log, group=True)

    def kill_group(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    continue
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout}s:\n{self.tail()}"
            ) from None

    def stop(self) -> None:
        """Teardown: SIGTERM, then SIGKILL if it does not go."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # no orphaned child outlives a drill
        self._log.close()


def event_body(event_id: str | None = None, *, subscription: str = "sub_drill") -> bytes:
    """A ``customer.subscription.updated`` event shaped like Stripe's (about 1 KB)."""
    event = {
        "id": event_id or f"evt_drill_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2026-08-26.dahlia",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "customer.subscription.updated",
        "data": {
            "object": {
                "id": subscription,
                "object": "subscription",
                "customer": "cus_drill",
                "status": "active",
                "cancel_at_period_end": False,
                "items": {"object": "list", "data": [], "has_more": False},
                "metadata": {"note": "x" * 512},
            },
            "previous_attributes": {"status": "past_due"},
        },
    }
    return json.dumps(event).encode()


def signed_headers(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Stripe-Signature": sign_payload(body, secret),
        "Content-Length": str(len(body)),
    }


def post_event(port: int, body: bytes, timeout: float = 30.0) -> int:
    """POST one signed event; the HTTP status, or raise ``OSError`` if the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/stripe/webhook/", body=body, headers=signed_headers(body))
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def event_id_of(body: bytes) -> str:
    return json.loads(body)["id"]


def warm_up(port: int, workers: int, timeout: float = 60.0) -> None:
    """Wait until every gunicorn worker has loaded Django (they import it after the fork,
    so the port answers seconds before all of them can take a request)."""
    from concurrent.futures import ThreadPoolExecutor

    def timed() -> float:
        started = time.monotonic()
        assert post_event(port, event_body()) == 200
        return time.monotonic() - started

    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(workers) as pool:
        while time.monotonic() < deadline:
            if max(pool.map(lambda _: timed(), range(workers * 2))) < 0.5:
                return
    raise AssertionError(f"gunicorn workers not all ready after {timeout}s")
