"""Lifecycles that cross, seen by the member who pays (SPEC §2, §2a).

Each test drives the fake Stripe and the fake Discord over HTTP and delivers Stripe's events
to our webhook, as the other lifecycle tests do, and checks what the person notices: access,
roles, charges and the messages they receive (exactly once per occasion, never for something
that did not happen).
"""

from __future__ import annotations

import pytest

from billing.models import Dispute
from tests.lifecycle.conftest import messages, never_sent, subscribe_individual

pytestmark = pytest.mark.django_db(transaction=True)


# --- disputes ---------------------------------------------------------------------------------


def test_a_dispute_first_seen_already_won_tells_the_member_nothing(world, settings):
    """The dispute opened and was won before we processed either event (a webhook outage):
    the member's access was never paused, so "your access is back" would be news of
    something that did not happen. Staff still hear of it."""
    settings.ADMIN_EMAIL = "ops@example.org"
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    opened = world.stripe.state.open_dispute(kay.subscription_id)
    world.stripe.state.close_dispute(opened["id"], won=True)
    world.deliver_new()

    dispute = Dispute.objects.get(dispute_id=opened["id"])
    assert dispute.outcome == Dispute.Outcome.WON
    assert world.roles(kay) == ["lord"]
    for recipient in (kay.discord_id, "kay@example.org"):
        never_sent("dispute_opened", recipient)
        never_sent("dispute_won", recipient)
    assert messages("dispute_staff", "ops@example.org")
