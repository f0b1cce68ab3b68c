"""Executable documentation: upgrading a populated database from the previous release by
docs/DEPLOYMENT.md's "Upgrade", then rolling it back by docs/ROLLBACK.md's "Code and schema"
and "Code only".

The host is a clone of this repository (its ``origin`` is the repository, so ``git fetch
--tags`` works as on a server) checked out at the previous release tag, with its own virtual
environment that sees the packages of the one running the tests (a ``.pth`` file): the previous
release installs into it by its own ``pyproject.toml`` (``pip install -e .``; ``v1.0.0`` has no
lock file, and the installed versions are inside its ranges, so pip changes none of them).

1. The previous release, as its operator ran it: its ``migrate`` on a fresh PostgreSQL database
   with production settings, its processes from the systemd units, behind the Caddy site file,
   against the fake Stripe and fake Discord; data through its own pages and webhooks: a member
   who paid and linked Discord, a second one whose renewal then fails (a payment-failure
   episode and its messages), a company owner with team seats; the inbox and outbox fill.
2. The ```sh blocks of "Upgrade", taken from the file, with ``RELEASE`` = the commit under
   test; the new processes start: ``/health/ready`` 200, every row still there, the paid
   member still Active and Squire, ``reconcile`` clean, and no message sent again.
3. The ```sh blocks of ROLLBACK.md's "Code and schema" (every migration since the previous tag
   reversed with the new code) and "Code only" (``PREVIOUS_TAG``), the previous release's
   processes start on that database: the applied migrations are exactly the previous tag's,
   ``/health/ready`` 200, the rows still there, the member
   still Active and Squire, ``reconcile`` clean, no message sent again.

The code upgraded to is the repository's committed ``HEAD`` (what a clone gets); the docs are
read from the working tree.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import psycopg
import pytest

from fakes.discord.seed import ARTHUR_ID
from fakes.discord.server import FakeDiscordServer
from tests.drills.production import (
    Browser,
    counts,
    messages_sent,
    populate,
    production,
    run_shell,
    wait_ready,
)
from tests.drills.test_deployment_docs import shell_blocks
from tests.processes import ROOT, manage

pytestmark = pytest.mark.slow

ROLLBACK = ROOT / "docs" / "ROLLBACK.md"
PROJECT_APPS = {path.parent.name for path in ROOT.glob("*/migrations")}
# How long the worker gets to deliver the outbox and run its billing tick before the drill
# counts the messages again.
SETTLE_SECONDS = 15


def git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


# The first release's commit (the annotated tag v1.0.0), for a clone that holds the history of
# main but not its tags.
FIRST_RELEASE = "d83faa74b384cfd2e0e74e47f425d3ec9dade568"


def previous_release() -> str:
    """The newest tag before ``HEAD`` (``HEAD`` may itself be the release being tagged)."""
    done = subprocess.run(
        ["git", "describe", "--tags", "--abbrev=0", "HEAD^"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        known = subprocess.run(
            ["git", "cat-file", "-e", f"{FIRST_RELEASE}^{{commit}}"], cwd=ROOT, timeout=30
        )
        if known.returncode == 0:
            return FIRST_RELEASE
        pytest.fail(
            "no release tag before HEAD in this clone (the first release is the annotated tag "
            f"v1.0.0): fetch the tags with full history (git fetch --tags --unshallow). "
            f"git describe: {done.stderr.strip()}"
        )
    return done.stdout.strip()


def host_checkout(tmp_path: Path, tag: str) -> Path:
    """``/srv/gateway`` at ``tag``, with a virtual environment that sees this one's packages."""
    checkout = tmp_path / "srv-gateway"
    git("clone", "--quiet", str(ROOT), str(checkout))
    git("checkout", "--quiet", tag, cwd=checkout)
    venv = checkout / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "tested-packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # The web unit starts .venv/bin/gunicorn: the console script pip wrote for the tested
    # environment, with this environment's Python.
    script = (Path(sysconfig.get_path("scripts")) / "gunicorn").read_text().split("\n", 1)[1]
    gunicorn = venv / "bin" / "gunicorn"
    gunicorn.write_text(f"#!{venv / 'bin' / 'python'}\n{script}")
    gunicorn.chmod(0o755)
    return checkout


def tag_migrations(checkout: Path) -> set[tuple[str, str]]:
    """(app, migration) of every project migration in the checked-out code."""
    return {
        (path.parent.parent.name, path.stem) for path in checkout.glob("*/migrations/[0-9]*.py")
    }


def applied_migrations(url: str) -> set[tuple[str, str]]:
    """What ``django_migrations`` records as applied for the project's apps."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT app, name FROM django_migrations").fetchall()
    return {(app, name) for app, name in rows if app in PROJECT_APPS}


def member_state(browser: Browser, discord: FakeDiscordServer, discord_user: str) -> tuple:
    """What the member sees on the dashboard and whether the guild shows them as Squire."""
    page = browser.get("/dashboard/")
    squire = discord.seed.role_id("squire")
    with discord.state.lock:
        member = discord.state.members.get(discord_user)
        is_squire = member is not None and squire in member.roles
    return page.status_code, "Active" in page.text, is_squire


def reconcile_report(env: dict[str, str], checkout: Path) -> dict:
    done = manage(env, "reconcile", "--json", checkout=checkout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_upgrade_from_the_previous_release_and_roll_back(tmp_path):
    previous = previous_release()
    release = git("rev-parse", "HEAD")
    upgrade = shell_blocks("Upgrade")
    schema_back = shell_blocks("Code and schema", ROLLBACK)
    code_back = shell_blocks("Code only (no migration in the release) — about 2 minutes", ROLLBACK)
    assert upgrade and schema_back and code_back
    checkout = host_checkout(tmp_path, previous)
    with production(tmp_path, "gw_upgrade_drill") as deployment:
        database_url, mail = deployment.database_url, deployment.mail
        stripe, discord = deployment.stripe, deployment.discord
        env = {**deployment.env, "RELEASE": release, "PREVIOUS_TAG": previous}

        # 1. The previous release as its documentation installed it. Its production
        # settings without Redis needed the database cache's table made by hand.
        run_shell(
            ".venv/bin/pip install --quiet -e .\n"
            ".venv/bin/python manage.py migrate --noinput\n"
            ".venv/bin/python manage.py createcachetable\n"
            ".venv/bin/python manage.py collectstatic --noinput\n"
            ".venv/bin/python manage.py setup_schedules\n",
            cwd=checkout,
            env=env,
        )
        deployment.start(env, checkout, "previous")
        arthur = Browser(deployment.proxy.url, deployment.proxy.cert)
        wait_ready(arthur)
        populate(arthur, discord, stripe, mail, database_url, confirm=False)
        assert member_state(arthur, discord, ARTHUR_ID) == (200, True, True)
        deployment.stop()
        expected = {
            "rows": counts(database_url),
            "member": (200, True, True),
            "reconcile": "clean",
            "sent": messages_sent(mail, discord),
        }

        def observed(stage: str) -> dict:
            """Start the checked-out code's processes, give the worker time for its outbox
            delivery and billing tick, and look at what an operator would."""
            deployment.start(env, checkout, stage)
            wait_ready(arthur)
            time.sleep(SETTLE_SECONDS)
            seen = {
                "rows": counts(database_url),
                "member": member_state(arthur, discord, ARTHUR_ID),
                "reconcile": reconcile_report(env, checkout)["status"],
                "sent": messages_sent(mail, discord),
            }
            deployment.stop()
            return seen

        # 2. Upgrade by the book (the running processes keep the old code meanwhile, but
        # nothing runs here: they are restarted afterwards, as step 4 says).
        for block in upgrade:
            run_shell(block, cwd=checkout, env=env)
        assert git("rev-parse", "HEAD", cwd=checkout) == release
        assert observed("upgraded") == expected, logs(tmp_path, "upgraded")

        # 3. Roll back: the schema with the new code, then the previous tag's code.
        for block in schema_back + code_back:
            run_shell(block, cwd=checkout, env=env)
        assert git("rev-parse", "HEAD", cwd=checkout) == git("rev-parse", f"{previous}^{{commit}}")
        assert applied_migrations(database_url) == tag_migrations(checkout)
        assert observed("rolled-back") == expected, logs(tmp_path, "rolled-back")


def logs(directory: Path, stage: str) -> str:
    """The last lines each process of ``stage`` logged."""
    return "\n\n".join(
        f"== {path.name}\n" + "\n".join(path.read_text().splitlines()[-30:])
        for path in sorted(directory.glob(f"*-{stage}.log"))
    )
