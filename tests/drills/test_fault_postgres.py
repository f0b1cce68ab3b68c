"""Drill: PostgreSQL stops while Stripe delivers webhooks.

With the database down our endpoint must answer 5xx (so Stripe keeps the event and retries)
and store nothing half-written; once the database is back, the fake Stripe's own retry
delivers the event and it is stored exactly once. Runs on a private PostgreSQL server.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from bench.reliability import record
from fakes.stripe.server import FakeStripeServer
from tests.drills.postgres import PrivatePostgres
from tests.drills.stack import INBOX, WEBHOOK_SECRET, Process, warm_up
from tests.processes import base_env, free_port, sync_tables, wait_for_port, wait_until

pytestmark = pytest.mark.slow


def inbox(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(
            f"SELECT event_id, type, status FROM {INBOX} ORDER BY id"  # noqa: S608
        ).fetchall()


def test_database_outage_answers_5xx_and_stripe_retry_applies_after_restart(tmp_path):
    server = PrivatePostgres()
    web = None
    stripe = None
    try:
        server.start()
        port = free_port()
        env = base_env(
            tmp_path / "unused.sqlite3",
            DJANGO_SETTINGS_MODULE="tests.gateway.process_settings",
            DATABASE_URL=server.url,
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            PORT=str(port),
            WEB_CONCURRENCY="2",
            DEBUG="false",
        )
        sync_tables(env)
        web = Process.gunicorn(env, tmp_path / "web.log")
        wait_for_port(port, timeout=60)
        warm_up(port, workers=2)
        with psycopg.connect(server.url) as conn:
            conn.execute(f"DELETE FROM {INBOX}")  # noqa: S608

        stripe = FakeStripeServer(
            webhook_url=f"http://127.0.0.1:{port}/stripe/webhook/", webhook_secret=WEBHOOK_SECRET
        ).start()
        stripe.configure_webhooks(attempts=10, backoff=0.5, timeout=15)
        before = stripe.state.create_customer({"email": "before@example.test"})
        stripe.wait_for_deliveries(1, timeout=20, status=("succeeded",))

        server.stop()
        outage_started = time.monotonic()
        during = stripe.state.create_customer({"email": "during@example.test"})

        def failed_attempts() -> list[dict]:
            return [
                attempt
                for delivery in stripe.deliveries()
                if delivery["status"] == "retrying"
                for attempt in delivery["attempts"]
            ]

        wait_until(lambda: len(failed_attempts()) >= 2, 30, "two failed deliveries")
        statuses = sorted({a["status_code"] for a in failed_attempts()}, key=str)
        slowest = max(a["duration_ms"] for a in failed_attempts())
        server.start()
        outage = time.monotonic() - outage_started
        deliveries = stripe.wait_for_deliveries(2, timeout=60, status=("succeeded",))
        retried = [d for d in deliveries if len(d["attempts"]) > 1]
        rows = inbox(server.url)
    finally:
        if stripe is not None:
            stripe.stop()
        if web is not None:
            web.stop()
        server.destroy()

    event_ids = [d["event_id"] for d in deliveries]
    stored = [row[0] for row in rows]
    types = {row[1] for row in rows}
    lost = [event_id for event_id in event_ids if event_id not in stored]
    passed = (
        all(isinstance(code, int) and 500 <= code < 600 for code in statuses)
        and not lost
        and sorted(stored) == sorted(set(stored))
        and len(retried) == 1
    )
    record(
        "fault_postgres",
        title="PostgreSQL stopped during webhook delivery",
        passed=passed,
        in_flight=len(retried),
        lost=len(lost),
        unit="webhook events",
        details=(
            f"database down {outage:.1f} s; the endpoint answered {statuses} "
            f"(slowest {slowest:.0f} ms) and stored nothing; after restart Stripe's retry "
            f"(attempt {len(retried[0]['attempts']) if retried else '–'}) was stored once; "
            f"inbox: {len(rows)} rows for {len(event_ids)} events"
        ),
    )
    assert before["id"] and during["id"]
    assert all(isinstance(code, int) and 500 <= code < 600 for code in statuses), statuses
    assert not lost
    assert sorted(stored) == sorted(set(stored)), "an event was stored twice"
    assert len(rows) == len(event_ids) == 2
    assert types == {"customer.created"}
    assert len(retried) == 1, "only the event sent during the outage needed a retry"
