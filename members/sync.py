"""Requests to converge a member's Discord state, enqueued by task name once the transaction
commits.

Every floor that changes what a member is entitled to (members, billing, discordsync itself)
asks here; the work is done by ``discordsync.tasks``, a floor above, so a rolled back change
never touches Discord and no app below ``discordsync`` imports it.
"""

from __future__ import annotations

from django.db import transaction
from django_q.tasks import async_task

# A Discord task that fails (Discord down, rate limited past the client's own retries) is
# not acknowledged: the broker presents it again after Q_RETRY, up to Q_MAX_ATTEMPTS, so an
# outage delays a role change instead of losing it. The tasks are idempotent.
RETRY_UNTIL_DONE = {"ack_failure": False}


def role_sync_request(*, member_id: int) -> None:
    """Converge the member's Discord roles to ``expected_role`` once this transaction commits.

    Every flow (claim, join, intro, failure, recovery, admin action, reconciliation) calls this
    after changing database state; the task itself is idempotent.
    """
    transaction.on_commit(
        lambda: async_task("discordsync.tasks.sync_member_roles", member_id, **RETRY_UNTIL_DONE)
    )


def member_remove_request(*, member_id: int, reason: str, farewell_id: int | None = None) -> None:
    """Remove managed roles and kick once this transaction commits (farewell sent first)."""
    transaction.on_commit(
        lambda: async_task(
            "discordsync.tasks.member_remove_from_guild",
            member_id,
            reason,
            farewell_id,
            **RETRY_UNTIL_DONE,
        )
    )


def discord_unlink_request(*, discord_id: str, reason: str) -> None:
    """Strip the managed roles from a Discord account just unlinked from its member.

    The member row no longer names the account, so the task takes the Discord id itself.
    """
    transaction.on_commit(
        lambda: async_task(
            "discordsync.tasks.strip_unlinked_roles", discord_id, reason, **RETRY_UNTIL_DONE
        )
    )
