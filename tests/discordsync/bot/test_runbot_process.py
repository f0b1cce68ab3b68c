"""The real ``manage.py runbot`` against the fake Discord over HTTP and websocket.

Each scenario is what a member or operator would notice: roles in the guild, the 🎉 reaction,
the DMs the bot sent, a clean exit on SIGTERM, and exactly one bot connected at a time.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.discord.seed import ROLE_LORD_ID, ROLE_SQUIRE_ID
from fakes.discord.server import FakeDiscordServer
from tests.discordsync.bot.procs import Bot, bot_env, query, seed, wait_until
from tests.processes import ROOT, fresh_database

pytestmark = pytest.mark.slow

INTRO = "400000000000000001"
PERSONAS = {
    "percival": "700000000000000011",  # Squire who posts a proper introduction
    "gawain": "700000000000000012",  # Squire whose introductions are too short
    "tristan": "700000000000000013",  # Squire who replies and posts in a thread
    "bors": "700000000000000014",  # Squire who edits a short message into an introduction
    "galahad": "700000000000000015",  # introduced member joining the guild late
    "kay": "700000000000000016",  # member who leaves the guild
}
NOT_IN_GUILD = {"galahad"}
INTRODUCED = {"galahad"}

SEED_CODE = """
from datetime import timedelta
from django.utils import timezone
from djstripe.models import Customer, Subscription
from members.models import Member, User
for name, discord_id, introduced in {rows!r}:
    user = User.objects.create_user(f"{{name}}@example.com", None)
    customer = Customer.objects.create(id=f"cus_{{name}}", stripe_data={{"id": f"cus_{{name}}"}})
    Subscription.objects.create(
        id=f"sub_{{name}}", customer=customer,
        stripe_data={{"id": f"sub_{{name}}", "status": "active"}},
    )
    Member.objects.create(
        user=user, stripe_customer_id=customer.id, subscription_id=f"sub_{{name}}",
        discord_id=discord_id, discord_username=name, linked_at=timezone.now(),
        introduced_at=timezone.now() - timedelta(days=1) if introduced else None,
    )
"""


def _world(server: FakeDiscordServer) -> None:
    for name, discord_id in PERSONAS.items():
        server.state.add_user(id=discord_id, username=name, global_name=name.title())
        if name not in NOT_IN_GUILD:
            server.state.add_member(discord_id, roles=[ROLE_SQUIRE_ID], dispatch=False)


def _seed_db(env: dict[str, str], names: list[str]) -> None:
    rows = [(n, PERSONAS[n], n in INTRODUCED) for n in names]
    seed(env, SEED_CODE.format(rows=rows))


def _connected(server: FakeDiscordServer) -> int:
    with server.state.lock:
        return sum(1 for s in server.state.sessions.values() if s.connected)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[FakeDiscordServer, Bot, Path]]:
    """One fake guild, one database and one running bot shared by the behaviour tests."""
    tmp = tmp_path_factory.mktemp("bot")
    database = fresh_database(tmp)
    with FakeDiscordServer() as server:
        _world(server)
        env = bot_env(database, server.settings())
        _seed_db(env, list(PERSONAS))
        bot = Bot(env, tmp / "runbot.log")
        try:
            bot.wait_log("bot_connected", timeout=30)
            # The connect's catch-up pass reads #introductions first; the tests below are about
            # messages the bot sees live, so they start once that pass is over.
            bot.wait_log("introductions_caught_up", timeout=30)
            yield server, bot, database
        finally:
            code = bot.stop()
            assert code == 0, bot.tail()


def _dm_texts(server: FakeDiscordServer, name: str) -> list[str]:
    return [m["content"] for m in server.state.dms_for(PERSONAS[name])]


def test_introduction_of_100_characters_promotes_reacts_and_welcomes(world):
    server, bot, database = world
    message = server.state.post_message(INTRO, PERSONAS["percival"], "p" * 100)
    server.state.wait_for(lambda s: s.member_roles(PERSONAS["percival"]) == [ROLE_LORD_ID], 20)
    wait_until(lambda: server.state.reactions(message["id"]), 10, "the 🎉 reaction")
    assert list(server.state.reactions(message["id"])) == ["🎉"]
    wait_until(lambda: _dm_texts(server, "percival"), 10, "the welcome DM")
    assert "Thanks for introducing yourself" in _dm_texts(server, "percival")[0]
    ((introduced_at, message_id),) = query(
        database,
        "SELECT introduced_at, intro_message_id FROM members_member WHERE discord_id = ?",
        PERSONAS["percival"],
    )
    assert introduced_at is not None and message_id == message["id"]
    handled = bot.wait_log("bot_event_handled", message_id=message["id"])
    assert handled["outcome"] == "promoted" and handled["request_id"]


def test_99_characters_get_one_guidance_dm_and_no_role(world):
    server, bot, _ = world
    first = server.state.post_message(INTRO, PERSONAS["gawain"], "g" * 99)
    bot.wait_log("bot_event_handled", message_id=first["id"], outcome="guidance_sent")
    second = server.state.post_message(INTRO, PERSONAS["gawain"], "still too short")
    bot.wait_log("bot_event_handled", message_id=second["id"], outcome="guidance_cooldown")
    wait_until(lambda: _dm_texts(server, "gawain"), 10, "the guidance DM")
    time.sleep(0.5)
    dms = _dm_texts(server, "gawain")
    assert len(dms) == 1 and "at least 100 characters" in dms[0]
    assert server.state.member_roles(PERSONAS["gawain"]) == [ROLE_SQUIRE_ID]
    assert server.state.reactions(first["id"]) == {}


def test_reply_and_thread_messages_do_nothing(world):
    server, bot, database = world
    anchor = server.state.post_message(INTRO, PERSONAS["percival"], "hello")
    reply = server.state.post_message(
        INTRO, PERSONAS["tristan"], "t" * 150, message_reference=anchor["id"]
    )
    in_thread = server.state.post_message(INTRO, PERSONAS["tristan"], "t" * 150, thread=True)
    for message in (reply, in_thread):
        bot.wait_log("bot_event_handled", message_id=message["id"], outcome="ignored")
    assert server.state.member_roles(PERSONAS["tristan"]) == [ROLE_SQUIRE_ID]
    assert _dm_texts(server, "tristan") == []
    assert query(
        database,
        "SELECT introduced_at, intro_guidance_sent_at FROM members_member WHERE discord_id = ?",
        PERSONAS["tristan"],
    ) == [(None, None)]


def test_an_edit_that_reaches_100_characters_promotes(world):
    server, bot, _ = world
    message = server.state.post_message(INTRO, PERSONAS["bors"], "Hi, I am Bors.")
    bot.wait_log("bot_event_handled", message_id=message["id"], outcome="guidance_sent")
    server.state.edit_message(message["id"], "Hi, I am Bors. " + "b" * 90)
    server.state.wait_for(lambda s: s.member_roles(PERSONAS["bors"]) == [ROLE_LORD_ID], 20)
    wait_until(lambda: server.state.reactions(message["id"]), 10, "the 🎉 reaction")
    handled = bot.wait_log("bot_event_handled", message_id=message["id"], outcome="promoted")
    assert handled["bot_event"] == "message_update"


def test_joining_the_guild_reapplies_the_expected_role(world):
    server, bot, database = world
    server.state.add_member(PERSONAS["galahad"])  # joins via the invite, no roles
    server.state.wait_for(lambda s: s.member_roles(PERSONAS["galahad"]) == [ROLE_LORD_ID], 20)
    assert query(
        database, "SELECT in_guild FROM members_member WHERE discord_id = ?", PERSONAS["galahad"]
    ) == [(1,)]


def test_leaving_the_guild_is_recorded(world):
    server, bot, database = world
    server.state.remove_member(PERSONAS["kay"])
    bot.wait_log("bot_event_handled", discord_user_id=PERSONAS["kay"], outcome="left")
    ((in_guild, left_at),) = query(
        database,
        "SELECT in_guild, guild_left_at FROM members_member WHERE discord_id = ?",
        PERSONAS["kay"],
    )
    assert in_guild == 0 and left_at is not None


def test_heartbeat_and_selfcheck_are_stored_for_readiness(world):
    _, bot, database = world

    def stored():
        rows = query(database, "SELECT beat_at, details FROM ops_heartbeat WHERE name = 'bot'")
        return rows and '"selfcheck"' in rows[0][1] and rows

    ((beat_at, details),) = wait_until(stored, 20, "the bot heartbeat with the self-check")
    assert '"ok": true' in details, details


def test_introductions_posted_while_the_bot_is_stopped_are_handled_on_start(tmp_path):
    database = fresh_database(tmp_path)
    with FakeDiscordServer() as server:
        _world(server)
        env = bot_env(database, server.settings())
        _seed_db(env, ["percival", "gawain"])

        first = Bot(env, tmp_path / "first.log")
        try:
            first.wait_log("introductions_caught_up", read=0, timeout=30)
            live = server.state.post_message(INTRO, PERSONAS["gawain"], "hi")
            first.wait_log("bot_event_handled", message_id=live["id"], outcome="guidance_sent")
        finally:
            assert first.stop() == 0, first.tail()
        assert _connected(server) == 0

        offline = server.state.post_message(INTRO, PERSONAS["percival"], "p" * 100)
        second = Bot(env, tmp_path / "second.log")
        try:
            # Only the message it missed is read: the live one moved the mark.
            second.wait_log("introductions_caught_up", read=1, promoted=1, timeout=30)
            server.state.wait_for(
                lambda s: s.member_roles(PERSONAS["percival"]) == [ROLE_LORD_ID], 20
            )
            wait_until(lambda: server.state.reactions(offline["id"]), 10, "the 🎉 reaction")
            wait_until(lambda: _dm_texts(server, "percival"), 10, "the welcome DM")
        finally:
            assert second.stop() == 0, second.tail()

        third = Bot(env, tmp_path / "third.log")
        try:
            third.wait_log("introductions_caught_up", read=0, promoted=0, timeout=30)
        finally:
            assert third.stop() == 0, third.tail()
        assert list(server.state.reactions(offline["id"])) == ["🎉"]
        (welcome,) = _dm_texts(server, "percival")
        assert "Thanks for introducing yourself" in welcome
        assert len(_dm_texts(server, "gawain")) == 1


def test_sigterm_lets_the_handler_in_flight_finish_and_exits_0(tmp_path):
    database = fresh_database(tmp_path)
    with FakeDiscordServer() as server:
        _world(server)
        env = bot_env(database, server.settings())
        _seed_db(env, ["percival"])
        bot = Bot(env, tmp_path / "runbot.log")
        try:
            bot.wait_log("bot_connected", timeout=30)
            # Hold the database's write lock so the introduction handler is stuck mid-flight.
            blocker = sqlite3.connect(database, timeout=20, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            message = server.state.post_message(INTRO, PERSONAS["percival"], "p" * 120)
            time.sleep(1.0)
            bot.proc.send_signal(signal.SIGTERM)
            bot.wait_log("bot_draining", inflight=1, timeout=5)
            time.sleep(1.0)
            blocker.execute("COMMIT")
            blocker.close()
            started = time.monotonic()
            code = bot.stop(timeout=15)
        finally:
            bot.kill()
        assert code == 0, bot.tail()
        assert time.monotonic() - started < 10
        # The in-flight introduction was completed, not dropped.
        assert query(
            database,
            "SELECT intro_message_id FROM members_member WHERE discord_id = ?",
            PERSONAS["percival"],
        ) == [(message["id"],)]
        assert bot.events("bot_stopped", drained=True, exit_code=0)
        assert query(database, "SELECT holder FROM ops_lease WHERE name = 'bot'") == [("",)]


def test_only_one_bot_connects_and_a_standby_takes_over_after_kill_9(tmp_path):
    database = fresh_database(tmp_path)
    with FakeDiscordServer() as server:
        env = bot_env(database, server.settings())
        first = Bot(env, tmp_path / "first.log")
        second = None
        try:
            first.wait_log("bot_connected", timeout=30)
            second = Bot(env, tmp_path / "second.log")
            second.wait_log("bot_waiting_for_lease", timeout=30)
            time.sleep(2)
            assert _connected(server) == 1
            assert not second.events("bot_connected")

            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
            killed_at = time.monotonic()
            second.wait_log("bot_connected", timeout=60)
            assert time.monotonic() - killed_at < 60
            wait_until(lambda: _connected(server) == 1, 10, "exactly one connected session")
            assert second.stop() == 0, second.tail()
        finally:
            first.kill()
            if second is not None:
                second.kill()


def _selfcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "discord_selfcheck"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_discord_selfcheck_exit_codes(tmp_path):
    database = fresh_database(tmp_path)
    with FakeDiscordServer() as server:
        env = bot_env(database, server.settings())
        ok = _selfcheck(env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.startswith("OK")

        server.state.set_bot_role_position(1)
        bad = _selfcheck(env)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert "[hierarchy:lord]" in bad.stdout

    unreachable = _selfcheck(env)  # the fake is gone: nothing answers
    assert unreachable.returncode == 2, unreachable.stdout + unreachable.stderr
    assert "Could not check" in unreachable.stderr
