"""Requests to converge a member's Discord state, enqueued by task name once the transaction
commits.

Every floor that changes what a member is entitled to (members, billing, discordsync itself)
asks here; the work is done by ``discordsync.tasks``, a floor above, so a rolled back change
never touches Discord and no app below ``discordsync`` imports it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django_q.tasks import async_task

from ops.services import notification_enqueue

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


def member_farewell_and_remove(
    *, member: Any, reason: str, kind: str, episode: str, context: dict[str, Any]
) -> None:
    """Queue a goodbye DM, then remove the managed roles and kick once this transaction commits.

    The removal task delivers the farewell first (Discord refuses DMs to a user who shares no
    guild with the bot). Nothing happens for a member without a linked Discord account.
    """
    if not member.discord_id:
        return
    farewell = notification_enqueue(
        kind=kind,
        channel="dm",
        recipient=member.discord_id,
        episode=episode,
        member=member,
        context=context,
    )
    member_remove_request(
        member_id=member.pk,
        reason=reason,
        farewell_id=farewell.pk if farewell is not None else None,
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


def guild_rejoin_request(*, member_id: int) -> None:
    """A linked member outside the guild may belong there again (a payment after a removal, a
    complimentary membership): once this transaction commits, note the absence and, if they
    are entitled then, email them the way back in (once per absence)."""
    transaction.on_commit(
        lambda: async_task("discordsync.tasks.guild_absence_note", member_id, **RETRY_UNTIL_DONE)
    )
