"""Drill: Sentry receives the errors of all three processes, and no secret in any envelope.

gunicorn, ``qcluster`` and ``runbot`` run as in production (Sentry starts from ``SENTRY_DSN``
in each), pointed at a local ingest server. The web error and the worker error are planted
with secrets (``tests/gateway/urls.py``); the bot's error is a real handler failure — the
members table disappears under it while a member posts an introduction. The web and worker
details are proven in ``tests/gateway/test_processes.py``; this drill adds the bot and checks
the three together.
"""

from __future__ import annotations

import sqlite3
import sys
import urllib.error
import urllib.request

import pytest

from bench.reliability import record
from fakes.discord.server import FakeDiscordServer
from tests.drills.stack import Process, drill_env
from tests.gateway import planted
from tests.observability import SentryIngest
from tests.processes import free_port, wait_for_port, wait_until

pytestmark = pytest.mark.slow

INTRO_CHANNEL = "400000000000000001"
SQUIRE_ROLE = "300000000000000001"
MEMBER = "700000000000000021"
SECRET_KEY = "drill-secret-key-Planted-0123456789abcdefghijklmnop"


def test_web_worker_and_bot_errors_reach_sentry_scrubbed(tmp_path):
    ingest = SentryIngest()
    port = free_port()
    processes: list[Process] = []
    try:
        with FakeDiscordServer() as discord:
            discord.state.add_user(id=MEMBER, username="lamorak", global_name="Lamorak")
            discord.state.add_member(MEMBER, roles=[SQUIRE_ROLE], dispatch=False)
            env = drill_env(
                tmp_path,
                **discord.settings(),
                SENTRY_DSN=ingest.dsn,
                SECRET_KEY=SECRET_KEY,
                PORT=str(port),
                WEB_CONCURRENCY="1",
                Q_WORKERS="1",
            )
            env["STRIPE_WEBHOOK_SECRET"] = planted.WEBHOOK_SECRET
            bot_token = env["DISCORD_BOT_TOKEN"]
            processes += [
                Process.gunicorn(env, tmp_path / "web.log"),
                Process.qcluster(env, tmp_path / "worker.log"),
                Process("bot", [sys.executable, "manage.py", "runbot"], env, tmp_path / "bot.log"),
            ]
            web, worker, bot = processes
            wait_for_port(port, timeout=60)
            wait_until(lambda: bot.events("bot_connected"), 60, "the bot to connect")

            with pytest.raises(urllib.error.HTTPError) as failed:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_test/boom/?email={planted.MEMBER_EMAIL}",
                    timeout=30,
                )
            assert failed.value.code == 500
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/_test/enqueue-failing/?email={planted.MEMBER_EMAIL}",
                timeout=30,
            ) as response:
                assert response.status == 200

            # The members table vanishes: the introduction handler fails for real.
            with sqlite3.connect(tmp_path / "gateway.sqlite3", timeout=20) as conn:
                conn.execute("ALTER TABLE members_member RENAME TO members_member_gone")
            discord.state.post_message(INTRO_CHANNEL, MEMBER, "an introduction " * 10)

            def by_process() -> dict[str, list[dict]]:
                found: dict[str, list[dict]] = {}
                for event in ingest.events():
                    found.setdefault(event.get("tags", {}).get("process", "?"), []).append(event)
                return found if {"web", "worker", "bot"} <= set(found) else {}

            events = wait_until(by_process, 60, "Sentry events from web, worker and bot")
            for process in processes:
                process.stop()
    finally:
        for process in processes:
            process.stop()
        ingest.close()

    sent = ingest.raw()
    secrets = [planted.WEBHOOK_SECRET, bot_token, SECRET_KEY, planted.MEMBER_EMAIL]
    leaked = [secret for secret in secrets if secret.encode() in sent]
    bot_errors = [
        value["type"]
        for event in events["bot"]
        for value in event.get("exception", {}).get("values", [])
    ]
    record(
        "fault_sentry",
        title="Errors in web, worker and bot reach Sentry",
        passed=not leaked and "OperationalError" in bot_errors,
        in_flight=None,
        lost=None,
        unit="Sentry events",
        details=(
            f"events by process: web {len(events['web'])}, worker {len(events['worker'])}, "
            f"bot {len(events['bot'])} (bot: {', '.join(sorted(set(bot_errors)))}); "
            f"{len(secrets)} planted secrets, {len(leaked)} found in {len(sent)} bytes sent"
        ),
    )
    assert not leaked, f"secrets reached Sentry: {leaked}"
    assert "OperationalError" in bot_errors, events["bot"]
    assert any(v["type"] == "ValueError" for e in events["web"] for v in e["exception"]["values"])
    assert any(
        v["type"] == "RuntimeError" for e in events["worker"] for v in e["exception"]["values"]
    )
