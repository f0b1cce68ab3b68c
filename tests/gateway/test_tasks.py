"""The request id travels with a django-q2 task through the ORM broker into the worker."""

from __future__ import annotations

from multiprocessing import Value

import pytest
import structlog
from django_q.brokers.orm import ORM
from django_q.queues import Queue
from django_q.signing import SignedPackage
from django_q.tasks import async_task
from django_q.worker import worker

from gateway.tasks import REQUEST_ID_KEY
from tests.gateway import jobs

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway.urls")]


@pytest.fixture(autouse=True)
def _clean_context():
    structlog.contextvars.clear_contextvars()
    jobs.SEEN.clear()
    yield
    structlog.contextvars.clear_contextvars()


def run_in_worker(task: dict) -> dict:
    """Run one task through django-q2's own worker loop, as a cluster process would."""
    tasks, results = Queue(), Queue()
    tasks.put(task)
    tasks.put("STOP")
    worker(tasks, results, Value("f", -1))
    return results.get(timeout=5)


def test_task_enqueued_in_a_request_runs_with_that_request_id():
    broker = ORM(list_key="gateway-test")
    structlog.contextvars.bind_contextvars(request_id="req-7c1d", user_id=41)

    async_task("tests.gateway.jobs.remember_context", q_options={"sync": False, "broker": broker})
    ((_, pack),) = broker.dequeue()
    task = SignedPackage.loads(pack)
    assert task[REQUEST_ID_KEY] == "req-7c1d"

    # The worker process has other context bound from a previous task: it must not leak.
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="previous-task", member_id=9)
    result = run_in_worker(task)

    assert result["success"] is True
    assert result["result"] == "req-7c1d"
    (seen,) = jobs.SEEN
    assert seen["request_id"] == "req-7c1d"
    assert seen["task_id"] == task["id"]
    assert "member_id" not in seen and "user_id" not in seen
    # Nothing of the task stays bound for the next one.
    assert structlog.contextvars.get_contextvars() == {}


def test_task_enqueued_outside_a_request_gets_a_fresh_id():
    broker = ORM(list_key="gateway-test")
    async_task("tests.gateway.jobs.remember_context", q_options={"sync": False, "broker": broker})
    async_task("tests.gateway.jobs.remember_context", q_options={"sync": False, "broker": broker})
    first, second = (SignedPackage.loads(broker.dequeue()[0][1]) for _ in range(2))
    assert first[REQUEST_ID_KEY] and second[REQUEST_ID_KEY]
    assert first[REQUEST_ID_KEY] != second[REQUEST_ID_KEY]


def test_inline_task_keeps_the_callers_context(client):
    response = client.get("/_test/enqueue/")
    (seen,) = jobs.SEEN
    assert seen["request_id"] == response["X-Request-ID"]
