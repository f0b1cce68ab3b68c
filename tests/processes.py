"""Helpers for tests that start the real processes (gunicorn, qcluster, runbot, sandbox).

Such a process cannot share pytest's in-memory test database, so it gets a SQLite file of its
own. Migrating from scratch costs over a minute (dj-stripe), so one migrated template is built
per set of migration files and copied for each test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".pytest_cache" / "process-db"


def _migrations_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("*/migrations/*.py")):
        digest.update(path.read_bytes())
    # What migrate creates besides the migrations (the database cache's table).
    digest.update((ROOT / "gateway" / "schema.py").read_bytes())
    digest.update(metadata.version("dj-stripe").encode())
    return digest.hexdigest()[:16]


def migrated_template() -> Path:
    """A migrated SQLite database file, built once per set of migrations."""
    template = CACHE / f"template-{_migrations_digest()}.sqlite3"
    if not template.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        building = template.with_suffix(f".{os.getpid()}.tmp")
        env = base_env(building)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        building.replace(template)
    return template


def fresh_database(directory: Path) -> Path:
    """A private copy of the migrated template for one test's processes."""
    target = directory / "gateway.sqlite3"
    shutil.copyfile(migrated_template(), target)
    return target


def base_env(database: Path, **overrides: str) -> dict[str, str]:
    """Environment for a child process: development profile, JSON logs, a file database."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "PYTEST", "Q_"))
    }
    env.update(
        {
            "DJANGO_ENV": "development",
            "DJANGO_SETTINGS_MODULE": "gateway.settings",
            "DATABASE_URL": f"sqlite:///{database}",
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


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
