"""Drill: ``qcluster`` is stopped while a drain works through a burst of renewal events.

The drain claims its rows in batches and reads Stripe ahead on a thread pool. SIGTERM to the
main process lets the drain in hand finish its slice: every row it claimed is either applied
or given back, none stays claimed (which would wait out a five-minute lease), and a new cluster
applies the rest, each event once.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from bench.reliability import record
from fakes.stripe.server import FakeStripeServer
from tests.drills.stack import INBOX, Process, drill_env, manage, query
from tests.processes import wait_until

pytestmark = pytest.mark.slow

SUBSCRIPTIONS = 40
STORE = """
import json
from billing.webhooks import inbox_insert
for event in json.load(open({path!r})):
    inbox_insert(event=event, body=json.dumps(event), status="pending")
"""
DRAIN = "from django_q.tasks import async_task; async_task('billing.tasks.drain_stripe_events')"


def _counts(env: dict[str, str]) -> dict[str, int]:
    return dict(query(env, f"SELECT status, count(*) FROM {INBOX} GROUP BY status"))  # noqa: S608


def test_sigterm_mid_burst_finishes_or_releases_every_claimed_row(tmp_path):
    with FakeStripeServer() as stripe:
        sub_ids = stripe.state.seed(SUBSCRIPTIONS, price="price_individual")
        with stripe.state.lock:
            before = len(stripe.state.events.order)
        for sub_id in sub_ids:
            stripe.state.renew(sub_id)
        with stripe.state.lock:
            events = [stripe.state.events.get(i) for i in stripe.state.events.order[before:]]
        stored = tmp_path / "events.json"
        stored.write_text(json.dumps(events))
        # Stripe answering in 150 ms: the drain is mid-batch, reads in flight, when stopped.
        stripe.latency.configure(ms=150)

        env = drill_env(tmp_path, Q_WORKERS="1", STRIPE_API_BASE=stripe.url)
        manage(env, STORE.format(path=str(stored)))
        manage(env, DRAIN)
        first = Process.qcluster(env, tmp_path / "worker-1.log", name="worker-1")
        try:
            wait_until(
                lambda: _counts(env).get("processed", 0) >= 10, 60, "the drain to be under way"
            )
            sigterm_at = time.monotonic()
            first.signal(signal.SIGTERM)
            code = first.wait(timeout=60)
            stopped_after = time.monotonic() - sigterm_at
        finally:
            first.stop()
        after_stop = _counts(env)
        held = query(env, f"SELECT count(*) FROM {INBOX} WHERE claimed_by <> ''")[0][0]  # noqa: S608
        given_back = query(
            env,
            f"SELECT count(*), coalesce(max(attempts), 0) FROM {INBOX} WHERE status = 'pending'",  # noqa: S608
        )[0]

        manage(env, DRAIN)
        second = Process.qcluster(env, tmp_path / "worker-2.log", name="worker-2")
        try:
            wait_until(
                lambda: _counts(env).get("processed", 0) == len(events), 120, "every event applied"
            )
        finally:
            second.stop()
        attempts = dict(query(env, f"SELECT attempts, count(*) FROM {INBOX} GROUP BY attempts"))  # noqa: S608

    passed = (
        code == 0
        and after_stop.get("processing", 0) == 0
        and held == 0
        and given_back[1] == 0
        and attempts == {1: len(events)}
    )
    record(
        "drain_sigterm",
        title="qcluster SIGTERM while the drain works through a renewal burst",
        passed=passed,
        in_flight=len(events) - after_stop.get("processed", 0),
        lost=len(events) - _counts(env).get("processed", 0),
        unit="events",
        details=(
            f"{len(events)} renewal events of {SUBSCRIPTIONS} subscriptions, Stripe at 150 ms; "
            f"SIGTERM with {after_stop.get('processed', 0)} applied: the cluster exited {code} "
            f"{stopped_after:.1f} s later with {after_stop.get('processing', 0)} rows still "
            f"claimed and {given_back[0]} given back unapplied; a new cluster applied the rest, "
            "each event once"
        ),
    )
    assert code == 0, first.tail()
    assert after_stop.get("processing", 0) == 0 and held == 0, after_stop
    assert given_back[1] == 0, "a row given back keeps no attempt it did not make"
    assert attempts == {1: len(events)}, attempts
