"""The running system for the browser suite: ``python -m gateway.devserver`` on free ports.

One stack serves the whole session (starting gunicorn, qcluster, runbot and the sandbox fakes
costs seconds, the journeys only need separate people). Emails go to Django's file backend so
a test can follow the links a member receives; the fakes are read through their control APIs.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email import message_from_string
from email.message import Message
from pathlib import Path
from typing import Any

from tests.processes import ROOT, sandbox_env, wait_for_port

STAFF_EMAIL = "staff@example.org"


def http(method: str, url: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
    """A JSON request to a fake's control API or the gateway's health endpoints."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def wait_until(predicate: Any, *, timeout: float = 30.0, interval: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")


@dataclass
class Mailbox:
    """The messages Django's file backend wrote (one file per connection, several per file)."""

    directory: Path

    def messages(self) -> list[Message]:
        found: list[Message] = []
        for path in sorted(self.directory.glob("*.log"), key=lambda p: p.stat().st_mtime):
            for chunk in path.read_text().split("-" * 79):
                if chunk.strip():
                    found.append(message_from_string(chunk.strip()))
        return found

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages() if address.lower() in (m["To"] or "").lower()]

    @staticmethod
    def body(message: Message) -> str:
        if message.is_multipart():
            for part in message.walk():
                if part.get_content_type() == "text/plain":
                    return part.get_payload(decode=True).decode()
        payload = message.get_payload(decode=True)
        return payload.decode() if isinstance(payload, bytes) else str(message.get_payload())

    def wait_for(self, address: str, subject_contains: str, timeout: float = 30.0) -> Message:
        def find() -> Message | None:
            for message in reversed(self.to(address)):
                if subject_contains.lower() in (message["Subject"] or "").lower():
                    return message
            return None

        return wait_until(find, timeout=timeout)

    def link(self, message: Message, path_contains: str) -> str:
        for url in re.findall(r"https?://[^\s<>\"']+", self.body(message)):
            if path_contains in url:
                return url
        raise AssertionError(f"no link containing {path_contains!r} in:\n{self.body(message)}")


@dataclass
class Stack:
    url: str
    stripe_url: str
    discord_url: str
    mailbox: Mailbox
    staff_email: str
    staff_password: str
    log_path: Path

    def stripe(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        status, body = http(method, f"{self.stripe_url}/_control/{path}", payload)
        assert status < 400, (status, body)
        return body

    def discord(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        status, body = http(method, f"{self.discord_url}/_control/{path}", payload)
        assert status < 400, (status, body)
        return body

    def discord_member_roles(self, user_id: str) -> list[str] | None:
        """The member's role ids in the fake guild, or None when not a member."""
        info = self.discord("GET", f"users/{user_id}")
        member = info.get("member")
        return None if member is None else list(member.get("roles", []))

    def subscription_for(self, email: str) -> dict[str, Any]:
        state = self.stripe("GET", "state?kind=customers,subscriptions&limit=1000")
        customers = {c["id"] for c in state["customers"] if c.get("email") == email}
        subscriptions = [s for s in state["subscriptions"] if s["customer"] in customers]
        assert subscriptions, f"no subscription for {email}"
        return subscriptions[-1]


def start_stack(directory: Path) -> tuple[subprocess.Popen[bytes], Stack]:
    mail = directory / "mail"
    mail.mkdir()
    env, port = sandbox_env(
        directory,
        STAFF_EMAIL=STAFF_EMAIL,
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(mail),
        # Every journey signs up from 127.0.0.1; the limits themselves are tested elsewhere.
        RATELIMIT_SIGNUP="100/h",
        RATELIMIT_LOGIN="100/5m",
        RATELIMIT_LOGIN_ADDRESS="100/5m",
        RATELIMIT_MAGIC_LINK="100/15m",
    )
    log_path = directory / "devserver.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.devserver"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, timeout=120)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            status, body = http("GET", f"{url}/health/ready")
            checks = body.get("checks", {}) if isinstance(body, dict) else {}
            return bool(checks.get("worker", {}).get("ok") and checks.get("bot", {}).get("ok"))

        wait_until(ready, timeout=120, interval=1)
        match = wait_until(
            lambda: re.search(
                rf"staff login: {re.escape(STAFF_EMAIL)} / (\S+)", log_path.read_text()
            ),
            timeout=30,
        )
    except BaseException:
        stop_stack(process)
        raise
    return process, Stack(
        url=url,
        stripe_url=f"http://127.0.0.1:{env['SANDBOX_STRIPE_PORT']}",
        discord_url=f"http://127.0.0.1:{env['SANDBOX_DISCORD_PORT']}",
        mailbox=Mailbox(mail),
        staff_email=STAFF_EMAIL,
        staff_password=match.group(1),
        log_path=log_path,
    )


def stop_stack(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
