"""``billing_tick --at T`` performs now what is due by T, stamped with the real time, so the
messages a member gets and the roles they hold agree; ``--dry-run`` only lists (SPEC §2a)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.entitlement import Access, member_access
from billing.models import FailureEpisode, StripeEventInbox
from members.models import Member
from ops.models import AuditLog, GatewayConfig, Notification
from tests.journeys import never_sent, sent_once, subscribe_individual

pytestmark = pytest.mark.django_db(transaction=True)

H = timedelta(hours=1)
D = timedelta(days=1)


def _tick(*args: str) -> str:
    out = StringIO()
    call_command("billing_tick", *args, stdout=out)
    return out.getvalue()


def test_at_a_later_moment_acts_now_and_roles_agree_with_the_messages(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    before = timezone.now()

    output = _tick("--at", (episode.opened_at + 49 * H).isoformat())

    after = timezone.now()
    assert f"episode {episode.pk}: entered Debtor" in output
    episode.refresh_from_db()
    assert before <= episode.debtor_at <= after  # when it happened, not the rehearsed moment
    debtor_days = GatewayConfig.load().debtor_days
    assert episode.removal_due_at == episode.debtor_at + timedelta(days=debtor_days)
    sent_once("debtor_entered", kay.discord_id)
    assert member_access(kay, timezone.now()) == Access.DEBTOR
    assert world.roles(kay) == ["debtor"]

    # Far beyond the removal date: one step per run, each stamped with the real time.
    far = (episode.opened_at + 90 * D).isoformat()
    output = _tick("--at", far)
    assert f"episode {episode.pk}: removed" in output
    episode.refresh_from_db()
    assert episode.closed_at <= timezone.now()
    kay.refresh_from_db()
    assert kay.cancelled_at is not None and kay.cancelled_at <= timezone.now()
    sent_once("removal", kay.discord_id)
    assert world.roles(kay) is None  # removed from the guild, as the message says
    assert world.stripe_status(kay.subscription_id) == "canceled"


def test_dry_run_lists_what_is_due_and_touches_nothing(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    una = subscribe_individual(world, "una@example.org")  # paid, never linked Discord
    episode = world.fail_renewal(kay.subscription_id)
    world.stripe.state.clear_requests()
    counts = (
        Notification.objects.count(),
        AuditLog.objects.count(),
        StripeEventInbox.objects.count(),
    )
    rows = list(FailureEpisode.objects.values())
    members = list(Member.objects.values())

    output = _tick("--at", (episode.opened_at + 49 * H).isoformat(), "--dry-run")

    assert f"episode {episode.pk}: would enter Debtor" in output
    assert f"member {una.pk}: would send claim:48h" in output
    assert "dry run: nothing was changed" in output
    assert (
        Notification.objects.count(),
        AuditLog.objects.count(),
        StripeEventInbox.objects.count(),
    ) == counts
    assert list(FailureEpisode.objects.values()) == rows
    assert list(Member.objects.values()) == members
    assert world.stripe.state.request_log() == []
    never_sent("debtor_entered", kay.discord_id)
    assert world.roles(kay) == ["lord"]


def test_dry_run_of_a_removal_says_the_subscription_would_be_cancelled(world):
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 49 * H)
    episode.refresh_from_db()
    world.stripe.state.clear_requests()

    output = _tick("--at", (episode.removal_due_at + H).isoformat(), "--dry-run")

    assert f"episode {episode.pk}: would be removed" in output
    assert "cancelled in Stripe" in output
    episode.refresh_from_db()
    assert episode.closed_at is None
    assert world.stripe.state.request_log() == []
    assert world.stripe_status(kay.subscription_id) == "past_due"
