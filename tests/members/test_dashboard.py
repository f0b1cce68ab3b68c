"""Dashboard and billing pages in each subscription state, mirrored from the fake Stripe."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import FailureEpisode
from members.models import Member, User
from tests.members.stripe_fake import (
    individual_subscriber,
    sync_subscription,
)
from tests.personas import SIGNUP_PASSWORD as PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(client) -> Member:
    user = User.objects.create_user("dana@example.org", PASSWORD)
    client.force_login(user)
    return Member.objects.create(user=user)


def page(client) -> str:
    response = client.get(reverse("billing:dashboard"))
    assert response.status_code == 200
    return response.content.decode()


def test_without_subscription_the_dashboard_offers_the_plans(client, member):
    body = page(client)

    assert "You have no active membership yet." in body
    assert reverse("billing:checkout_individual") in body
    assert reverse("billing:company") in body
    assert "Link Discord" not in body


def test_active_subscriber_sees_status_plan_renewal_and_link_discord(client, member, stripe_server):
    individual_subscriber(member, stripe_server)

    body = page(client)

    assert "badge-active" in body
    assert "Individual membership" in body
    assert "Renews on" in body
    assert 'href="/claim/"' in body and "Link Discord" in body
    assert reverse("billing:billing_portal") in body
    assert "Payment problem" not in body


def test_cancel_at_period_end_is_announced(client, member, stripe_server):
    subscription_id = individual_subscriber(member, stripe_server)
    stripe_server.state.set_cancel_at_period_end(subscription_id)
    sync_subscription(subscription_id)

    body = page(client)

    assert "Your subscription is set to end on" in body
    assert "Ends on" in body
    assert "badge-active" in body


def test_open_failure_episode_shows_the_billing_banner_with_grace_end(
    client, member, stripe_server
):
    subscription_id = individual_subscriber(member, stripe_server)
    grace_end = timezone.now() + timedelta(hours=30)
    FailureEpisode.objects.create(
        subscription_id=subscription_id,
        member=member,
        opened_at=timezone.now() - timedelta(hours=18),
        grace_ends_at=grace_end,
    )

    body = page(client)

    assert "Payment problem" in body
    assert 'role="alert"' in body
    assert grace_end.strftime("%-d %B %Y") in body
    assert "Update payment method" in body


def test_linked_member_sees_discord_name_and_invite(client, member, stripe_server, settings):
    individual_subscriber(member, stripe_server)
    Member.objects.filter(pk=member.pk).update(discord_id="123", discord_username="dana#1")

    body = page(client)

    assert "Linked as <strong>dana#1</strong>" in body
    assert settings.DISCORD_INVITE_URL in body
    assert "Link Discord" not in body


def test_checkout_success_message(client, member):
    response = client.get(reverse("billing:dashboard") + "?checkout=success")

    assert "Your payment is being confirmed." in response.content.decode()


def test_billing_page_lists_subscription_and_invoices(client, member, stripe_server):
    import stripe
    from djstripe.models import Invoice

    subscription_id = individual_subscriber(member, stripe_server)
    for invoice in stripe.Invoice.list(subscription=subscription_id).data:
        Invoice.sync_from_stripe_data(invoice)

    response = client.get(reverse("billing:billing"))

    body = response.content.decode()
    assert response.status_code == 200
    assert "Latest invoices" in body
    assert "Paid" in body
    assert reverse("billing:billing_portal") in body
