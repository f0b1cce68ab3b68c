"""The billing worker's tasks: draining stored Stripe events (``billing/drain.py``) and the
billing tick (``billing/tick.py``)."""

from __future__ import annotations

from billing import drain
from billing.tick import billing_tick as run_tick


def process_stripe_event(inbox_id: int, force: bool = False) -> str:
    """Apply one stored event now; ``force`` reapplies it whatever its state."""
    return drain.process_stripe_event(inbox_id, force=force)


def drain_stripe_events() -> int:
    """Apply every due stored event: people first, then one read per Stripe object."""
    return drain.drain_stripe_events()


def billing_tick() -> str:
    """The five-minute schedule (``ops/schedules.py``): due failure-timeline transitions,
    reminders and claim reminders, as of now (``billing/tick.py``)."""
    report = run_tick()
    return "; ".join(report.lines())
