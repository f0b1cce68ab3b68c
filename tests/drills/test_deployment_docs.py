"""Executable documentation: docs/DEPLOYMENT.md's first-time setup, as written, gives a
working gateway.

The ```sh blocks under "First-time setup" are taken from the file and run in order on a fresh
PostgreSQL database with production settings (secrets generated here). The processes are
started by the systemd units' own ``ExecStart`` lines, behind ``deploy/caddy/Caddyfile``,
against the fake Stripe and fake Discord; a member then signs up, pays on the fake Checkout,
links Discord and becomes Squire. First with no Redis (database cache, ORM broker), then the
same deployment with ``REDIS_URL`` set, the setup blocks run again (they are idempotent, as an
operator adding Redis would run them). Editing the doc into something that does not work
fails this test.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import redis

from fakes.discord.seed import ARTHUR_ID, GUINEVERE_ID
from tests.drills.production import (
    Browser,
    member_journey,
    production,
    run_shell,
    wait_ready,
)
from tests.processes import ROOT

pytestmark = pytest.mark.slow

DEPLOYMENT = ROOT / "docs" / "DEPLOYMENT.md"
REDIS_DB = 9


def shell_blocks(heading: str, path: Path = DEPLOYMENT) -> list[str]:
    """The ```sh blocks of the ``## heading`` section, in order, unindented."""
    text = path.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return [
        textwrap.dedent(block)
        for block in re.findall(r"^[ \t]*```sh\n(.*?)^[ \t]*```$", section, re.M | re.S)
    ]


def test_the_setup_and_upgrade_sections_have_runnable_blocks():
    setup, upgrade = shell_blocks("First-time setup"), shell_blocks("Upgrade")
    assert any("manage.py migrate" in block for block in setup)
    assert any("--require-hashes -r requirements.txt" in block for block in setup + upgrade)
    assert not any("createcachetable" in block for block in setup + upgrade)


def test_first_time_setup_by_the_book_without_and_with_redis(tmp_path):
    setup = shell_blocks("First-time setup")
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    redis.Redis.from_url(redis_url, socket_timeout=5).flushdb()
    with production(tmp_path, "gw_docs") as deployment:
        proxy, discord = deployment.proxy, deployment.discord
        for run, (extra, member, discord_user) in enumerate(
            (
                ({}, "first@example.org", ARTHUR_ID),
                ({"REDIS_URL": redis_url}, "second@example.org", GUINEVERE_ID),
            )
        ):
            run_env = {**deployment.env, **extra}
            browser = Browser(proxy.url, proxy.cert)  # a new visitor each time
            for block in setup:
                run_shell(block, cwd=ROOT, env=run_env)
            units = deployment.start(run_env, ROOT, f"run{run}")
            try:
                wait_ready(browser)
                member_journey(
                    browser, discord, deployment.mail, email=member, discord_user=discord_user
                )
            except AssertionError as failure:
                raise AssertionError(f"{failure}\n{units.tails()}") from None
            deployment.stop()
