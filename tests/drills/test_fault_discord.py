"""Drill: Discord answers 5xx, 429 and 403 for a while, under a real ``qcluster``.

Role changes are requested the way every flow requests them (``role_sync_request``) while the
fake Discord fails: server errors on member reads, rate limits on role writes, and a bad role
hierarchy (403) for one member. After the faults stop, every role change must have reached
Discord, the breaker must have opened on the invalid responses, and the admin channel must
have got exactly one alert for the 403s.
"""

from __future__ import annotations

import time

import pytest

from bench.reliability import record
from fakes.discord.server import FakeDiscordServer
from tests.discordsync.bot.test_runbot_process import PERSONAS, SEED_CODE
from tests.drills.stack import Process, drill_env, manage, query
from tests.processes import wait_until

pytestmark = pytest.mark.slow

SQUIRE = "300000000000000001"
FORBIDDEN = "kay"  # the member whose role writes get 403 (role hierarchy)
FAULT_SECONDS = 12.0  # longer than the client's own bounded retries


def test_discord_outage_loses_no_role_change_opens_the_breaker_and_alerts_once(tmp_path):
    with FakeDiscordServer() as discord:
        guild = discord.settings()["DISCORD_GUILD_ID"]
        for name, discord_id in PERSONAS.items():
            discord.state.add_user(id=discord_id, username=name, global_name=name.title())
            discord.state.add_member(discord_id, roles=[], dispatch=False)
        env = drill_env(
            tmp_path,
            **discord.settings(),
            Q_WORKERS="2",
            Q_TIMEOUT="8",
            Q_RETRY="10",
            DISCORD_BREAKER_THRESHOLD="5",
            DISCORD_BREAKER_COOLDOWN_SECONDS="2",
        )
        rows = [(name, discord_id, False) for name, discord_id in PERSONAS.items()]
        manage(env, SEED_CODE.format(rows=rows))

        worker = Process.qcluster(env, tmp_path / "worker.log")
        try:
            wait_until(
                lambda: any("running" in str(line.get("event")) for line in worker.lines()),
                60,
                "the cluster to run",
            )
            members = f"/guilds/{guild}/members"
            faults_end = time.monotonic() + FAULT_SECONDS
            discord.state.add_fault(members, 500, method="GET", count=None, seconds=FAULT_SECONDS)
            # Twice the breaker's threshold of invalid answers: the default database cache
            # counts with get-then-set, so two workers can lose an increment now and then.
            discord.state.add_fault(members, 429, method="PUT", count=8, retry_after=0.3)
            discord.state.add_fault(
                f"{members}/{PERSONAS[FORBIDDEN]}/roles",
                403,
                method="PUT",
                count=None,
                seconds=FAULT_SECONDS * 3,
                code=50013,
                message="Missing Permissions",
            )
            manage(
                env,
                "from members.sync import role_sync_request\n"
                "from members.models import Member\n"
                "for pk in Member.objects.values_list('pk', flat=True):\n"
                "    role_sync_request(member_id=pk)\n",
            )
            # The faults pass; then the queue has its retry period twice over to converge.
            deadline = faults_end + 2 * int(env["Q_RETRY"]) + 10
            healthy = [name for name in PERSONAS if name != FORBIDDEN]

            def converged() -> bool:
                return all(
                    discord.state.member_roles(PERSONAS[name]) == [SQUIRE] for name in healthy
                )

            while time.monotonic() < deadline and not converged():
                time.sleep(0.5)
        finally:
            worker.stop()

        missing = [n for n in healthy if discord.state.member_roles(PERSONAS[n]) != [SQUIRE]]
        server_errors = len(discord.state.requests(status=500))
        rate_limited = len(discord.state.requests(status=429))
        forbidden = len(discord.state.requests(status=403))
    alerts = query(
        env,
        "SELECT context FROM ops_notification WHERE kind = 'bot_alert' "
        "AND channel = 'admin_channel'",
    )
    breaker_opened = worker.events("discord_breaker_opened")
    statuses = dict(query(env, "SELECT discord_username, role_sync_status FROM members_member"))
    passed = not missing and bool(breaker_opened) and len(alerts) == 1
    record(
        "fault_discord",
        title="Discord 5xx, 429 and 403 for a while",
        passed=passed,
        in_flight=len(healthy),
        lost=len(missing),
        unit="role changes",
        details=(
            f"{server_errors} × 500, {rate_limited} × 429, {forbidden} × 403 answered; "
            f"breaker opened {len(breaker_opened)}×; {len(alerts)} admin alert(s); "
            f"role changes not applied after recovery: {missing or 'none'} "
            f"(statuses {statuses})"
        ),
    )
    assert not missing, f"role changes lost after the outage: {missing}; statuses {statuses}"
    assert breaker_opened, worker.tail()
    assert len(alerts) == 1, alerts
