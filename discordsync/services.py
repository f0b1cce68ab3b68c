"""Discord side effects are requested here and performed by tasks after commit."""

from __future__ import annotations

from django.db import transaction
from django_q.tasks import async_task


def role_sync_request(*, member_id: int) -> None:
    """Converge the member's Discord roles to ``expected_role`` once this transaction commits.

    Every flow (claim, join, intro, failure, recovery, admin action, reconciliation) calls this
    after changing database state; the task itself is idempotent.
    """
    transaction.on_commit(lambda: async_task("discordsync.tasks.sync_member_roles", member_id))
