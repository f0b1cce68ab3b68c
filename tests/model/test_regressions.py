"""Counterexamples the stateful model test found, kept as plain, readable tests.

Each test is the shrunk sequence of one counterexample of ``tests/model/machine.py``, written
with the lifecycle suite's personas: the fake Stripe and the fake Discord over HTTP, our signed
webhook endpoint, the billing tick. ``python -m bench.model_run`` lists them in
``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import pytest

from billing.models import FailureEpisode
from billing.staff_services import member_complimentary_end, member_complimentary_grant
from members.models import User
from ops.models import Notification
from tests.journeys import World, messages, never_sent, subscribe_company, subscribe_individual

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failed_renewal_delivered_after_the_cancellation_sends_no_dunning(world: World):
    """A renewal fails, the member cancels, and only then Stripe's payment_failed arrives:
    no failure episode and no "your payment failed" for a subscription that has ended."""
    kay = subscribe_individual(world, "kay@example.org")
    world.stripe.state.fail_renewal(kay.subscription_id)
    world.stripe.state.cancel(kay.subscription_id)
    world.deliver_new()  # in Stripe's order, but after both happened

    assert not FailureEpisode.objects.filter(subscription_id=kay.subscription_id).exists()
    never_sent("payment_failed", "kay@example.org")
    assert not Notification.objects.filter(kind__startswith="debtor").exists()


def test_a_complimentary_member_outlives_the_subscription_and_leaves_when_it_ends(world: World):
    """Staff grant a paying member a complimentary membership, then the subscription ends:
    the member keeps access (entitled without a subscription). When staff end the complimentary
    membership, it ends through the normal path: farewell, roles removed, kicked."""
    staff = User.objects.create_superuser("staff@example.org", "correct horse battery")
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    member_complimentary_grant(member=kay, actor=staff, reason="speaker at the summit")

    world.stripe.state.cancel(kay.subscription_id)
    world.deliver_new()
    assert world.roles(kay) == ["lord"]
    never_sent("farewell", kay.discord_id)

    member_complimentary_end(member=kay, actor=staff, reason="summit is over")
    assert world.roles(kay) is None
    assert len(messages("farewell", kay.discord_id)) == 1


def test_a_complimentary_owner_outlives_the_team_and_leaves_when_it_ends(world: World):
    """Found by the model test: a company owner with a complimentary membership keeps access
    when the team's subscription ends (detached from the team, still entitled), and leaves
    through the normal ending once staff end the complimentary membership."""
    staff = User.objects.create_superuser("staff@example.org", "correct horse battery")
    _, ann = subscribe_company(world, "ann@example.org", "Acme", owner_seats=1, team_seats=0)
    ann = world.link(ann, "ann", role="lord")
    member_complimentary_grant(member=ann, actor=staff, reason="community partner")

    world.stripe.state.cancel(ann.billing_subscription_id)
    world.deliver_new()
    ann.refresh_from_db()
    assert ann.team_id is None
    assert world.roles(ann) == ["lord"]
    never_sent("farewell", ann.discord_id)

    member_complimentary_end(member=ann, actor=staff, reason="partnership over")
    assert world.roles(ann) is None
    assert len(messages("farewell", ann.discord_id)) == 1
