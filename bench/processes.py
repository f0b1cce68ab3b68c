"""Starting the gateway's own processes from a benchmark or a test: a free port, a child
environment that inherits nothing of the parent's Django configuration, tables created straight
from the models, and waiting until a server listens.

The benchmarks and the tests that start real processes (``tests/processes.py``,
``tests/drills/``) share these, so a child process is prepared the same way everywhere.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.docs import ROOT

# What a child must not inherit: the parent's settings, database, pytest and django-q state.
PARENT_ONLY = ("DJANGO_", "DATABASE_URL", "PYTEST", "Q_")


def child_env(*, drop: tuple[str, ...] = (), **values: str) -> dict[str, str]:
    """This process's environment without the parent's configuration (``PARENT_ONLY`` and any
    prefix in ``drop``), with ``values`` on top."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(PARENT_ONLY + drop)
    }
    env.update(values)
    return env


def manage(
    env: dict[str, str], *args: str, checkout: Path = ROOT, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``manage.py <args>`` of ``checkout`` (this one by default, else a clone with its own
    virtual environment) in a child process with ``env``."""
    python = sys.executable if checkout == ROOT else str(checkout / ".venv" / "bin" / "python")
    return subprocess.run(
        [python, "manage.py", *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sync_tables(env: dict[str, str], *, timeout: float = 300, checkout: Path = ROOT) -> None:
    """Create the tables straight from the models (``migrate --run-syncdb``) of ``checkout``, as
    ``--nomigrations`` does: dj-stripe's migrations take over a minute and are never what a
    benchmark or a process test is about."""
    command = ("migrate", "--run-syncdb", "--noinput")
    done = manage(env, *command, timeout=timeout, checkout=checkout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark (``getrusage``; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
