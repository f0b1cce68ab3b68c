"""The billing worker's tasks: draining stored Stripe events (``billing/drain.py``) and the
billing tick (``billing/tick.py``)."""

from __future__ import annotations

from billing import drain, plan_change
from billing.tick import billing_tick as run_tick
from members.models import Member


def process_stripe_event(inbox_id: int, force: bool = False) -> str:
    """Apply one stored event now; ``force`` reapplies it whatever its state."""
    return drain.process_stripe_event(inbox_id, force=force)


def drain_stripe_events() -> int:
    """Apply every due stored event: people first, then one read per Stripe object."""
    return drain.drain_stripe_events()


def subscription_replaced_end(subscription_id: str, replaced_by: str, member_id: int) -> int:
    """A member moved plans: refund the old subscription's unused time and cancel it
    (``billing/plan_change.py``); idempotent, so a retry after a failure is safe."""
    member = Member.objects.filter(pk=member_id).first()
    return plan_change.replaced_subscription_end(
        subscription_id=subscription_id, replaced_by=replaced_by, target=member
    )


def billing_tick() -> str:
    """The five-minute schedule (``ops/schedules.py``): due failure-timeline transitions,
    reminders and claim reminders, as of now (``billing/tick.py``)."""
    report = run_tick()
    return "; ".join(report.lines())
