"""The billing tick: every time-driven step of billing, run every few minutes by the worker
(``billing.tasks.billing_tick``) or by hand (``manage.py billing_tick``).

Payment-failure episodes advance (``billing.lifecycle``), complimentary memberships expire
(``billing.complimentary``) and claim reminders go out (``billing.reminders``); a paid-meanwhile
episode is settled by ``billing.services.payment_recovered``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from django.utils import timezone

from billing.complimentary import complimentary_expire_due, complimentary_expiring
from billing.lifecycle import (
    CLOCK_SKEW,
    EpisodeSettled,
    LifecycleError,
    episode_advance,
    reminder_due,
)
from billing.models import FailureEpisode
from billing.reminders import claim_reminders_due, claim_reminders_send
from billing.services import payment_recovered
from ops.models import GatewayConfig

log = structlog.get_logger(__name__)


@dataclass
class TickReport:
    """What one tick did (or, as a dry run, would do), for the command's output, logs and
    tests."""

    now: datetime
    due_by: datetime
    dry_run: bool = False
    cancel_in_stripe: bool = False
    entered_debtor: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    reminders: list[str] = field(default_factory=list)
    claim_reminders: list[str] = field(default_factory=list)
    complimentary_ended: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped: bool = False

    def lines(self) -> list[str]:
        header = f"billing tick as of {self.now.isoformat()}"
        if self.due_by != self.now:
            header += f", doing what is due by {self.due_by.isoformat()}"
        lines = [header]
        if self.dry_run:
            cancel = " (subscription would be cancelled in Stripe)" if self.cancel_in_stripe else ""
            lines += [f"episode {pk}: would enter Debtor" for pk in self.entered_debtor]
            lines += [f"episode {pk}: would be removed{cancel}" for pk in self.removed]
            lines += [f"reminder {name} (unless already sent)" for name in self.reminders]
            lines += [
                f"complimentary membership {pk}: would end" for pk in self.complimentary_ended
            ]
            lines += [
                f"claim reminder {name} (unless already sent)" for name in self.claim_reminders
            ]
            if len(lines) == 1:
                lines.append("nothing due")
            lines.append(
                "dry run: nothing was changed; Stripe is asked before each step for real, and "
                "a renewal paid meanwhile settles its episode instead"
            )
            return lines
        lines += [f"episode {pk}: entered Debtor" for pk in self.entered_debtor]
        lines += [f"episode {pk}: removed" for pk in self.removed]
        lines += [f"episode {pk}: paid in Stripe, recovered" for pk in self.recovered]
        lines += [f"reminder {name}" for name in self.reminders]
        lines += [f"claim reminder {name}" for name in self.claim_reminders]
        lines += [f"complimentary membership {pk}: ended" for pk in self.complimentary_ended]
        lines += [f"error: {error}" for error in self.errors]
        if self.stopped:
            lines.append("stopped early on request; the next tick continues")
        if len(lines) == 1:
            lines.append("nothing due")
        return lines


def billing_tick(
    *,
    now: datetime | None = None,
    due_by: datetime | None = None,
    dry_run: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> TickReport:
    """Perform at ``now`` every transition and message due by ``due_by`` (default ``now``);
    safe to run concurrently.

    Every change is stamped with ``now``, which must not lie in the future: the role policy
    reads the real clock, so a future stamp would send Debtor messages to members who keep
    their role. A later moment goes in ``due_by``. Each episode is handled in its own
    transaction, so one that fails (Stripe down while cancelling) is reported and retried
    next tick without holding up the others. ``dry_run`` only lists what is due: no database
    write, no outbox row, no Stripe call. ``should_stop`` is polled between units of work
    (SIGTERM in the command).
    """
    real_now = timezone.now()
    now = now or real_now
    if now > real_now + CLOCK_SKEW:
        raise LifecycleError(
            f"a tick cannot happen at {now.isoformat()}, later than the clock "
            f"({real_now.isoformat()}); pass the later moment as due_by"
        )
    due_by = due_by or now
    stop = should_stop or (lambda: False)
    config = GatewayConfig.load()
    report = TickReport(
        now=now, due_by=due_by, dry_run=dry_run, cancel_in_stripe=config.cancel_stripe_on_removal
    )
    episodes = FailureEpisode.objects.filter(closed_at__isnull=True, opened_at__lte=now).order_by(
        "opened_at", "pk"
    )
    if dry_run:
        for episode in episodes:
            _plan(report, episode, config)
        report.complimentary_ended = complimentary_expiring(due_by=due_by)
        report.claim_reminders = [
            f"member {member.pk}: would send {step.name}"
            for member, step in claim_reminders_due(now=now, due_by=due_by)
        ]
        return report
    for episode_id in list(episodes.values_list("pk", flat=True)):
        if stop():
            report.stopped = True
            return report
        try:
            try:
                entered, removed, reminder = episode_advance(
                    episode_id=episode_id, now=now, due_by=due_by
                )
            except EpisodeSettled as settled:
                if payment_recovered(
                    subscription_id=settled.subscription_id,
                    subscription=settled.subscription,
                    now=now,
                ):
                    report.recovered.append(episode_id)
                continue
            if entered:
                report.entered_debtor.append(episode_id)
            if removed:
                report.removed.append(episode_id)
            elif reminder:
                report.reminders.append(f"episode {episode_id}: {reminder}")
        except Exception as exc:  # noqa: BLE001 — one bad episode must not stop the others
            log.exception("billing_tick_episode_failed", episode_id=episode_id)
            report.errors.append(f"episode {episode_id}: {type(exc).__name__}: {exc}")
    if stop():
        report.stopped = True
        return report
    try:
        report.complimentary_ended = complimentary_expire_due(now=now, due_by=due_by)
    except Exception as exc:  # noqa: BLE001 — reported; the next tick tries again
        log.exception("billing_tick_complimentary_failed")
        report.errors.append(f"complimentary memberships: {type(exc).__name__}: {exc}")
    try:
        report.claim_reminders = claim_reminders_send(now=now, due_by=due_by, should_stop=stop)
    except Exception as exc:  # noqa: BLE001 — reported; the next tick tries again
        log.exception("billing_tick_claim_reminders_failed")
        report.errors.append(f"claim reminders: {type(exc).__name__}: {exc}")
    log.info(
        "billing_tick_done",
        at=now.isoformat(),
        due_by=due_by.isoformat(),
        entered_debtor=len(report.entered_debtor),
        removed=len(report.removed),
        recovered=len(report.recovered),
        reminders=len(report.reminders),
        claim_reminders=len(report.claim_reminders),
        errors=len(report.errors),
    )
    return report


def _plan(report: TickReport, episode: FailureEpisode, config: GatewayConfig) -> None:
    """What :func:`episode_advance` would do with this episode, read-only (``--dry-run``)."""
    if episode.debtor_at is None and episode.grace_ends_at <= report.due_by:
        report.entered_debtor.append(episode.pk)
    elif episode.removal_due_at is not None and episode.removal_due_at <= report.due_by:
        report.removed.append(episode.pk)
    else:
        reminder = reminder_due(episode, config, now=report.now, due_by=report.due_by)
        if reminder is not None:
            report.reminders.append(f"episode {episode.pk}: {reminder.name}")
