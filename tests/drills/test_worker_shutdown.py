"""Drill: ``qcluster`` is stopped with a task in flight.

SIGTERM to the main process (what systemd sends with ``KillMode=mixed``) must let the running
task finish and be applied, then exit 0. SIGKILL to the whole process group (a crash: nothing
gets to clean up) must lose nothing either: the ORM broker presents the task again once its
``retry`` lease runs out, and a new cluster applies it exactly once.
"""

from __future__ import annotations

import signal
import time

import pytest

from bench.reliability import record
from tests.drills.stack import Process, drill_env, manage, query
from tests.processes import wait_until

pytestmark = pytest.mark.slow

# timeout < retry, both short so a redelivery happens within the drill.
Q_ENV = {"Q_WORKERS": "1", "Q_TIMEOUT": "8", "Q_RETRY": "10", "Q_MAX_ATTEMPTS": "3"}


def enqueue(env: dict[str, str], key: str, seconds: float) -> None:
    manage(
        env,
        "from django_q.tasks import async_task; "
        f"async_task('tests.drills.jobs.slow_apply', {key!r}, {seconds})",
    )


def attempts(env: dict[str, str], key: str) -> list[tuple[int, float]]:
    try:
        return query(env, "SELECT pid, started FROM drill_attempt WHERE key = ?", key)
    except Exception:  # the table appears with the first attempt
        return []


def applied(env: dict[str, str], key: str) -> int:
    try:
        return query(env, "SELECT count(*) FROM drill_applied WHERE key = ?", key)[0][0]
    except Exception:
        return 0


def test_sigterm_lets_the_task_in_flight_finish_and_exits_0(tmp_path):
    env = drill_env(tmp_path, **Q_ENV)
    enqueue(env, "term", 4.0)
    worker = Process.qcluster(env, tmp_path / "worker.log")
    try:
        wait_until(lambda: attempts(env, "term"), 60, "the task to start")
        sigterm_at = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
        stopped_after = time.monotonic() - sigterm_at
    finally:
        worker.stop()
    done = applied(env, "term")
    succeeded = query(env, "SELECT count(*) FROM django_q_task WHERE success = 1")[0][0]
    passed = code == 0 and done == 1 and len(attempts(env, "term")) == 1
    record(
        "worker_sigterm",
        title="qcluster SIGTERM with a task running",
        passed=passed,
        in_flight=1,
        lost=1 - done,
        unit="tasks",
        details=(
            f"a 4 s task was running; it finished and was applied ({done}×, {succeeded} success "
            f"row), then the cluster exited {code} {stopped_after:.1f} s after SIGTERM"
        ),
    )
    assert done == 1, worker.tail()
    assert len(attempts(env, "term")) == 1
    assert succeeded == 1
    assert code == 0, worker.tail()


def test_sigkill_mid_task_is_redelivered_after_retry_and_applied_once(tmp_path):
    env = drill_env(tmp_path, **Q_ENV)
    enqueue(env, "kill", 4.0)
    first = Process.qcluster(env, tmp_path / "worker-1.log", name="worker-1")
    try:
        wait_until(lambda: attempts(env, "kill"), 60, "the task to start")
        first.kill_group()
        killed_at = time.monotonic()
    finally:
        first.stop()
    assert applied(env, "kill") == 0, "the killed task cannot have finished"

    second = Process.qcluster(env, tmp_path / "worker-2.log", name="worker-2")
    try:
        wait_until(lambda: applied(env, "kill"), 60, "the redelivered task to be applied")
        redelivered_after = time.monotonic() - killed_at
        # Long enough for a third presentation, had the second not been acknowledged.
        time.sleep(float(Q_ENV["Q_RETRY"]) + 2)
    finally:
        second.stop()
    runs = attempts(env, "kill")
    done = applied(env, "kill")
    left = query(env, "SELECT count(*) FROM django_q_ormq")[0][0]
    passed = done == 1 and len(runs) == 2 and left == 0
    record(
        "worker_sigkill",
        title="qcluster SIGKILL (whole group) mid-task",
        passed=passed,
        in_flight=1,
        lost=1 - done,
        unit="tasks",
        details=(
            f"the task was presented again {redelivered_after:.0f} s after the kill "
            f"(retry {Q_ENV['Q_RETRY']} s) to a new cluster; {len(runs)} runs, applied {done}×, "
            f"{left} left queued"
        ),
    )
    assert done == 1
    assert len(runs) == 2, runs
    assert runs[0][0] != runs[1][0], "the second run is a different worker process"
    assert left == 0
