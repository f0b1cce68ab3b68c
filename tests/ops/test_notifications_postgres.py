"""Exactly once under real concurrency: workers racing for the same outbox row (PostgreSQL)."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection
from django.test import override_settings

from ops.models import Notification
from ops.tasks import deliver_notification

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class SlowEmailBackend(LocmemBackend):
    """A provider that takes a while, so racing workers overlap inside the send."""

    sent: list[str] = []
    lock = threading.Lock()

    def send_messages(self, messages):
        time.sleep(0.3)
        with self.lock:
            type(self).sent.extend(m.to[0] for m in messages)
        return len(messages)


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL (set DATABASE_URL=postgres://…): SQLite serialises writers, "
            "so two workers cannot race there"
        )


@override_settings(EMAIL_BACKEND="tests.ops.test_notifications_postgres.SlowEmailBackend")
def test_workers_racing_for_one_row_send_it_once():
    SlowEmailBackend.sent = []
    notification = Notification.objects.create(
        key="email:ada@example.com:welcome:sub_1",
        channel="email",
        kind="welcome",
        recipient="ada@example.com",
    )
    workers = 8
    start = threading.Barrier(workers)
    results: list[str] = []

    def worker() -> None:
        try:
            start.wait()
            results.append(deliver_notification(notification.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results) == ["sent"] + ["skipped"] * (workers - 1)
    assert SlowEmailBackend.sent == ["ada@example.com"]
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT
    assert notification.attempts == 1
