"""Drill: scale-out on one machine — two web servers behind one address, two qclusters on the
Redis broker, two bots.

The fake Stripe delivers a stream of events over TLS through the project's reverse proxy
(``deploy/caddy/Caddyfile`` run by Caddy, round robin) to both gunicorns;
both clusters drain them. Every event must be applied exactly once, each scheduled job must run
at most once per period although both clusters run the scheduler, and only one bot may hold
the gateway connection (its takeover after SIGKILL is proven in
``tests/discordsync/bot/test_runbot_process.py::test_only_one_bot_connects_and_a_standby_takes_over_after_kill_9``).
Runs on a private PostgreSQL server and a flushed Redis database.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
import redis

from bench.reliability import record
from fakes.discord.server import FakeDiscordServer
from fakes.stripe.server import FakeStripeServer
from tests.discordsync.bot.procs import Bot
from tests.drills.caddy import CaddyProxy
from tests.drills.postgres import PrivatePostgres
from tests.drills.stack import INBOX, WEBHOOK_SECRET, Process
from tests.processes import base_env, free_port, sync_tables, wait_for_port, wait_until

pytestmark = pytest.mark.slow

REDIS_DB = 11
EVENTS = 40
TASK_TAKEN = re.compile(r" processing \S+ '([\w.]+)'")
OBSERVE_SECONDS = 75  # the scheduler ticks every ~30 s: two or three ticks per cluster


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()


def cluster_running(process: Process) -> bool:
    return any(str(line.get("event", "")).endswith("running.") for line in process.lines())


def tasks_taken(process: Process) -> Counter:
    """The tasks this cluster took off the shared broker, by function (django-q's own line)."""
    taken = Counter()
    for line in process.lines():
        found = TASK_TAKEN.search(str(line.get("event", "")))
        if found:
            taken[found[1]] += 1
    return taken


def test_two_webs_two_clusters_two_bots_apply_everything_once(tmp_path):
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    redis.Redis.from_url(redis_url, socket_timeout=5).flushdb()
    server = PrivatePostgres()
    processes: list[Process] = []
    bots: list[Bot] = []
    proxy = stripe = None
    try:
        server.start()
        with FakeDiscordServer() as discord:
            ports = [free_port(), free_port()]
            env = base_env(
                tmp_path / "unused.sqlite3",
                DJANGO_SETTINGS_MODULE="tests.gateway.process_settings",
                DATABASE_URL=server.url,
                REDIS_URL=redis_url,
                STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                WEB_CONCURRENCY="2",
                TRUSTED_PROXY_COUNT="1",
                Q_WORKERS="2",
                DEBUG="false",
                **discord.settings(),
            )
            sync_tables(env)
            stripe = FakeStripeServer(webhook_secret=WEBHOOK_SECRET).start()
            env["STRIPE_API_BASE"] = stripe.url
            for n, port in enumerate(ports, 1):
                processes.append(
                    Process.gunicorn(
                        {**env, "PORT": str(port)}, tmp_path / f"web{n}.log", name=f"web{n}"
                    )
                )
            for n in (1, 2):
                processes.append(
                    Process.qcluster(env, tmp_path / f"worker{n}.log", name=f"worker{n}")
                )
            bots = [Bot(env, tmp_path / f"bot{n}.log") for n in (1, 2)]
            started = time.monotonic()
            for port in ports:
                wait_for_port(port, timeout=60)
            # Both clusters listen on the broker before the stream starts: a cluster still
            # booting would leave the whole burst to the other and prove nothing.
            wait_until(
                lambda: all(cluster_running(p) for p in processes if p.name.startswith("worker")),
                90,
                "both clusters to run",
            )
            proxy = CaddyProxy(ports, tmp_path)
            stripe.set_webhook(f"{proxy.url}/stripe/webhook/")
            stripe.configure_webhooks(
                concurrency=4, attempts=8, backoff=0.5, ca_file=str(proxy.cert)
            )

            for n in range(EVENTS):
                stripe.state.create_customer({"email": f"member{n}@example.test"})
            deliveries = stripe.wait_for_deliveries(EVENTS, timeout=90, status=("succeeded",))

            def all_processed() -> bool:
                done = rows(server.url, f"SELECT count(*) FROM {INBOX} WHERE status = 'processed'")  # noqa: S608
                return done[0][0] >= EVENTS

            wait_until(all_processed, 90, "both clusters to process every event")
            wait_until(
                lambda: any(bot.events("bot_connected") for bot in bots), 60, "a bot to connect"
            )
            time.sleep(max(0.0, OBSERVE_SECONDS - (time.monotonic() - started)))
            # Counted after the observation window: a second connection would show by now.
            connected = sum(1 for bot in bots if bot.events("bot_connected"))
            waiting = sum(1 for bot in bots if bot.events("bot_waiting_for_lease"))
            inbox = rows(server.url, f"SELECT event_id, status, attempts FROM {INBOX}")  # noqa: S608
            mirrored = rows(server.url, "SELECT count(*) FROM djstripe_event")[0][0]
            runs = rows(
                server.url,
                "SELECT func, started FROM django_q_task "
                "WHERE func = 'ops.tasks.worker_heartbeat' ORDER BY started",
            )
    finally:
        for bot in bots:
            bot.kill()
        for process in processes:
            process.stop()
        if proxy is not None:
            proxy.close()
        if stripe is not None:
            stripe.stop()
        server.destroy()

    processed_by = Counter()
    applied = Counter()
    taken = {}
    for process in processes:
        if process.name.startswith("worker"):
            taken[process.name] = sum(tasks_taken(process).values())
            for line in process.events("stripe_event_processed"):
                applied[line["event_id"]] += 1
                processed_by[process.name] += 1
    event_ids = {d["event_id"] for d in deliveries}
    twice = [event_id for event_id, count in applied.items() if count > 1]
    never = sorted(event_ids - set(applied))
    heartbeat_starts = [started for func, started in runs if func == "ops.tasks.worker_heartbeat"]
    gaps = [b - a for a, b in zip(heartbeat_starts, heartbeat_starts[1:])]
    double_runs = [gap for gap in gaps if gap < timedelta(seconds=30)]
    # Which gunicorn the proxy sent each delivery to: their access lines.
    split = sorted(
        process.log_path.read_text(errors="replace").count("POST /stripe/webhook/ HTTP/")
        for process in processes
        if process.name.startswith("web")
    )
    passed = (
        not twice
        and not never
        and not double_runs
        and all(taken.values())
        and connected == 1
        and waiting == 1
        and all(status == "processed" and attempts == 1 for _, status, attempts in inbox)
    )
    record(
        "scale_out",
        title="Scale-out: 2 gunicorn + 2 qcluster (Redis) + 2 bots",
        passed=passed,
        in_flight=len(event_ids),
        lost=len(never),
        unit="webhook events",
        details=(
            f"{len(event_ids)} events through one address (proxy split {split}); "
            f"processed by {dict(sorted(processed_by.items()))}; tasks taken "
            f"{dict(sorted(taken.items()))}, {len(twice)} twice, "
            f"{mirrored} dj-stripe events; worker heartbeat schedule ran "
            f"{len(heartbeat_starts)}× in {OBSERVE_SECONDS} s, {len(double_runs)} double runs; "
            f"bots connected {connected}, waiting {waiting}"
        ),
    )
    assert not never, f"never applied: {never}"
    assert not twice, f"applied twice: {twice}"
    assert all(status == "processed" and attempts == 1 for _, status, attempts in inbox), inbox
    assert min(split) > 0, f"both web servers took deliveries: {split}"
    # One drain may apply a whole burst (it takes everything due), so which cluster applied
    # which event is chance; that both took tasks (drains, scheduled jobs) off the one broker
    # in the window is not.
    assert len(taken) == 2 and all(taken.values()), f"both clusters worked: {taken}"
    assert heartbeat_starts, "the schedule ran"
    assert not double_runs, gaps
    assert (connected, waiting) == (1, 1)
