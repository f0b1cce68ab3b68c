"""Failure episodes follow Stripe's current state, whatever order its events arrive in.

Stripe does not order events, retries late ones for days, may send one change as two Event
objects, and operators replay stored events. SPEC §2a: an episode opens only for a
``subscription_cycle`` invoice that is still open and unpaid on a subscription that is still
``past_due``/``unpaid``, and closes only when that invoice (or a later one of the same
subscription) is paid. The billing tick re-checks before Debtor, reminders and removal.
"""

from __future__ import annotations

import contextlib
import itertools
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import FailureEpisode
from billing.tasks import drain_stripe_events
from ops.models import Notification
from tests.journeys import World, never_sent, sent_once, subscribe_individual
from tests.providers import deliver, recorded_events, worker_busy

pytestmark = pytest.mark.django_db(transaction=True)

H = timedelta(hours=1)
D = timedelta(days=1)

DUNNING = ("payment_failed", "grace_warning", "debtor_entered", "debtor_reminder", "removal")


def _held(world: World) -> list[dict[str, Any]]:
    """Events the fake emitted since the last delivery, held back (not delivered yet)."""
    events = [e for e in recorded_events(world.stripe) if e["id"] not in world.seen]
    world.seen.update(e["id"] for e in events)
    return events


def _deliver(world: World, events: list[dict[str, Any]], *, batched: bool = False) -> None:
    """Deliver each event as it arrives, or (``batched``) let them pile up while the worker
    is busy and apply them with one drain, by Stripe object."""
    with worker_busy() if batched else contextlib.nullcontext():
        for event in events:
            assert deliver(world.client, event).status_code == 200
    if batched:
        drain_stripe_events()


def _latest_invoice(world: World, subscription_id: str) -> dict[str, Any]:
    sub = world.stripe.state.get_subscription(subscription_id)
    return world.stripe.state.get_invoice(sub["latest_invoice"])


def _dunning_to(member: Any) -> list[str]:
    return list(
        Notification.objects.filter(member=member, kind__in=DUNNING).values_list("kind", flat=True)
    )


def test_failed_renewal_delivered_after_it_was_paid_changes_nothing(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    world.stripe.state.fail_renewal(kay.subscription_id)
    failure = _held(world)  # Stripe's delivery of the failure is delayed (an outage)
    world.recover(kay.subscription_id)  # the card is fixed; these arrive at once

    _deliver(world, failure)  # the retries of the failure arrive late

    assert not FailureEpisode.objects.exists()
    never_sent("payment_failed", kay.discord_id)
    never_sent("payment_failed", "kay@example.org")
    assert world.roles(kay) == ["lord"]
    assert world.tick(timezone.now()).lines()[1:] == ["nothing due"]
    assert world.stripe_status(kay.subscription_id) == "active"


@pytest.mark.parametrize("batched", [False, True])
def test_a_new_failure_seen_with_the_recovery_of_the_last_one_opens_its_own_episode(world, batched):
    """The card was fixed, then the next renewal failed too, and the gateway hears of both at
    once (one drain) or newest first: the old episode closes as recovered and the new failure
    opens its own, so its member is told and the timeline runs."""
    gaheris = world.link(subscribe_individual(world, "gaheris@example.org"), "gaheris", role="lord")
    sub_id = gaheris.subscription_id
    world.fail_renewal(sub_id)
    world.stripe.state.recover(sub_id)
    world.stripe.state.fail_renewal(sub_id)  # the next period's renewal fails as well

    _deliver(world, list(reversed(_held(world))), batched=batched)

    open_episodes = FailureEpisode.objects.filter(subscription_id=sub_id, closed_at__isnull=True)
    assert [e.invoice_id for e in open_episodes] == [_latest_invoice(world, sub_id)["id"]]
    assert FailureEpisode.objects.filter(subscription_id=sub_id).count() == 2
    told = _dunning_to(gaheris)
    assert told.count("payment_failed") == 4  # email and DM, for each failure
    assert Notification.objects.filter(member=gaheris, kind="recovered_grace").count() == 2


def test_any_event_about_a_failing_renewal_starts_its_grace(world):
    """Whichever event about the subscription or its invoices arrives first (here one Stripe
    sends before it reports the failure), the gateway reads the truth: the renewal is failing,
    so the episode opens and the member is told once; the later events change nothing."""
    elaine = subscribe_individual(world, "elaine@example.org")
    world.stripe.state.fail_renewal(elaine.subscription_id)
    held = _held(world)
    early = [e for e in held if e["type"] not in ("invoice.payment_failed", "invoice.paid")]
    early = [e for e in early if not e["type"].startswith("customer.subscription.")]
    assert early, [e["type"] for e in held]

    _deliver(world, early[:1])
    opened = FailureEpisode.objects.get(subscription_id=elaine.subscription_id)
    _deliver(world, held)

    assert FailureEpisode.objects.get(subscription_id=elaine.subscription_id) == opened
    assert opened.invoice_id == _latest_invoice(world, elaine.subscription_id)["id"]
    sent_once("payment_failed", "elaine@example.org")


def test_replayed_old_paid_invoice_leaves_a_new_failure_open(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    world.stripe.state.renew(kay.subscription_id)  # last month's renewal, paid
    world.deliver_new()
    old_paid = [
        e
        for e in recorded_events(world.stripe, ("invoice.paid",))
        if e["data"]["object"]["billing_reason"] == "subscription_cycle"
    ]
    assert len(old_paid) == 1
    episode = world.fail_renewal(kay.subscription_id)  # this month's renewal fails

    # An operator replays the stored event, and Stripe sends the same change as a new Event.
    call_command("replay_stripe_events", "--id", old_paid[0]["id"], stdout=StringIO())
    _deliver(world, [{**old_paid[0], "id": old_paid[0]["id"] + "_copy"}])

    episode.refresh_from_db()
    assert episode.closed_at is None
    never_sent("recovered_grace", kay.discord_id)
    sent_once("payment_failed", kay.discord_id)


def test_lost_paid_webhook_converges_from_the_subscription_update(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    world.stripe.state.recover(kay.subscription_id)
    updates = [e for e in _held(world) if e["type"] == "customer.subscription.updated"]

    _deliver(world, updates)  # every invoice.paid delivery was lost

    episode.refresh_from_db()
    assert episode.close_reason == FailureEpisode.CloseReason.RECOVERED
    sent_once("recovered_grace", kay.discord_id)
    assert world.roles(kay) == ["lord"]


def test_tick_checks_stripe_before_debtor_and_does_not_punish_a_payer(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    world.stripe.state.recover(kay.subscription_id)
    _held(world)  # paid in Stripe; every webhook about it was lost

    report = world.tick(t0 + 49 * H)

    assert report.entered_debtor == []
    episode.refresh_from_db()
    assert episode.close_reason == FailureEpisode.CloseReason.RECOVERED
    never_sent("debtor_entered", kay.discord_id)
    assert world.roles(kay) == ["lord"]


def test_tick_never_removes_or_cancels_a_paid_subscription(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 49 * H)
    episode.refresh_from_db()
    assert world.roles(kay) == ["debtor"]
    world.stripe.state.recover(kay.subscription_id)
    _held(world)  # paid during Debtor; the webhooks were lost

    report = world.tick(episode.removal_due_at)

    assert report.removed == []
    assert world.stripe_status(kay.subscription_id) == "active"
    episode.refresh_from_db()
    assert episode.close_reason == FailureEpisode.CloseReason.RECOVERED
    kay.refresh_from_db()
    assert kay.cancelled_at is None
    never_sent("removal", kay.discord_id)
    sent_once("recovered_debtor", kay.discord_id)
    assert world.roles(kay) == ["lord"]


# --- the property: any order, duplicates and replays converge to what Stripe says -----------

_emails = itertools.count()


@st.composite
def deliveries(draw: st.DrawFn, count: int) -> list[int]:
    """An order of ``count`` events, some of them twice (a retry or a second Event object)."""
    order = draw(st.permutations(range(count)))
    if not count:
        return order
    extra = draw(st.lists(st.integers(0, count - 1), max_size=3))
    for index in extra:
        order.insert(draw(st.integers(0, len(order))), index)
    return order


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.data(),
    retries=st.integers(0, 1),
    recovers=st.booleans(),
    batched=st.booleans(),
    pause=st.sampled_from([0, 3]),
)
def test_any_order_of_a_renewal_failure_and_recovery_converges(
    world, data, retries, recovers, batched, pause
):
    n = next(_emails)
    member = world.link(subscribe_individual(world, f"p{n}@example.org"), f"p{n}", role="lord")
    sub_id = member.subscription_id
    world.stripe.state.fail_renewal(sub_id)
    for _ in range(retries):
        world.stripe.state.fail_renewal(sub_id)  # Stripe's automatic retry fails too
    first = _held(world)
    # Part of the failure arrives before the card is fixed, the rest later, in any order.
    early = data.draw(deliveries(len(first)), label="early")
    cut = data.draw(st.integers(0, len(early)), label="cut")
    _deliver(world, [first[i] for i in early[:cut]], batched=batched)
    if recovers:
        world.stripe.state.recover(sub_id)
    rest = [first[i] for i in early[cut:]] + _held(world)
    late = data.draw(deliveries(len(rest)), label="late")
    copies = [
        {**rest[i], "id": f"{rest[i]['id']}_{k}"} if k else rest[i] for k, i in enumerate(late)
    ]
    # Late deliveries may come seconds after a read was applied: it settles those it saw.
    with time_machine.travel(timezone.now() + timedelta(seconds=pause), tick=True):
        _deliver(world, copies, batched=batched)

    invoice = _latest_invoice(world, sub_id)
    episodes = FailureEpisode.objects.filter(subscription_id=sub_id)
    open_episodes = list(episodes.filter(closed_at__isnull=True))
    assert world.roles(member) == ["lord"]
    if recovers:
        assert invoice["status"] == "paid"
        assert open_episodes == []
        told_failed = Notification.objects.filter(member=member, kind="payment_failed").exists()
        recovered = Notification.objects.filter(member=member, kind="recovered_grace").count()
        # Told about the failure only if it was still true; then told about the recovery.
        assert recovered == (2 if told_failed else 0)
        if cut == 0:
            assert _dunning_to(member) == []
    else:
        assert [e.invoice_id for e in open_episodes] == [invoice["id"]]
        assert episodes.count() == 1
        assert sorted(_dunning_to(member)) == ["payment_failed", "payment_failed"]  # DM + email
