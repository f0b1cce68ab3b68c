"""Start the real ``manage.py runbot`` (and friends) against a fake Discord, and watch them.

The child processes use a SQLite file of their own (``tests.processes``); the test seeds it
with ``manage.py shell`` and reads it back with plain SQL, so nothing of ours is mocked.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.processes import ROOT, base_env


def bot_env(database: Path, discord_settings: dict[str, str], **extra: str) -> dict[str, str]:
    """The test profile runs tasks inline (Q_SYNC), so role sync and DMs happen inside the
    bot process against the fake Discord, with no worker to start."""
    return base_env(
        database,
        DJANGO_ENV="test",
        Q_SYNC="true",
        LOG_LEVEL="INFO",
        **discord_settings,
        **extra,
    )


def seed(env: dict[str, str], code: str) -> None:
    """Run ORM code in a child process against the child database."""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def query(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database, timeout=20) as conn:
        return conn.execute(sql, params).fetchall()


class Bot:
    """One ``runbot`` child process with its log captured to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runbot", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
        return out

    def events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines()
            if line.get("event") == name and all(line.get(k) == v for k, v in match.items())
        ]

    def wait_log(self, name: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            hits = self.events(name, **match)
            return hits[-1] if hits else None

        return wait_until(found, timeout, f"log {name} {match}", self)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, bot: Bot | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if bot is not None and bot.proc.poll() is not None:
            raise AssertionError(
                f"runbot exited ({bot.proc.returncode}) waiting for {what}:\n{bot.tail()}"
            )
        time.sleep(0.1)
    tail = f"\n{bot.tail()}" if bot is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
