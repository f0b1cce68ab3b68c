"""Helpers for tests that start the real processes (gunicorn, qcluster, runbot, sandbox).

Such a process cannot share pytest's in-memory test database, so it gets a SQLite file of its
own. Migrating from scratch costs over a minute (dj-stripe), so one migrated template is built
per set of migration files and copied for each test. Ports and the child environment come from
``bench/processes.py``, which the benchmarks use too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.processes import (
    ROOT,
    child_env,
    free_port,
    manage,
    sync_tables,
    wait_for_port,
    wait_until,
)

__all__ = [
    "ROOT",
    "base_env",
    "free_port",
    "fresh_database",
    "manage",
    "migrated_template",
    "sandbox_env",
    "sync_tables",
    "wait_for_port",
    "wait_until",
]
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
    env = child_env(
        DJANGO_ENV="development",
        DJANGO_SETTINGS_MODULE="gateway.settings",
        DATABASE_URL=f"sqlite:///{database}",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def sandbox_env(directory: Path, **overrides: str) -> tuple[dict[str, str], int]:
    """The environment of ``make run`` (``gateway.devserver``: the sandbox with its fake Stripe
    and fake Discord) on free ports with a fresh database; also returns the web port."""
    port = free_port()
    env = base_env(
        fresh_database(directory),
        PORT=str(port),
        SANDBOX_STRIPE_PORT=str(free_port()),
        SANDBOX_DISCORD_PORT=str(free_port()),
        WEB_CONCURRENCY="2",
        LOG_FORMAT="console",
        **overrides,
    )
    return env, port
