"""Complimentary memberships (SPEC §2a): staff grant access without payment, with a reason
and an optional end; a forced role only chooses the role of a member who is entitled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.entitlement import BillingState, member_is_entitled
from billing.models import ComplimentaryMembership
from billing.roles import member_expected_role
from billing.tick import billing_tick
from discordsync.tasks import sync_member_roles
from gateway.admin_site import members_by_state
from members.models import Member
from ops.models import AuditLog, Notification
from tests import personas
from tests.gateway.console.test_member_actions import REASON, managed
from tests.personas import LANCELOT

pytestmark = pytest.mark.django_db

PAST = timezone.now() - timedelta(days=3)


def test_a_forced_role_never_grants_access_to_an_unpaid_member(bulk_action, admin_web, discord):
    unpaid = personas.member("lancelot", status="canceled", discord_id=LANCELOT)

    bulk_action(admin_web, "force_role", [unpaid.pk], role="knight", reason=REASON)

    member = Member.objects.get(pk=unpaid.pk)
    assert member_expected_role(member, timezone.now()) is None
    sync_member_roles(member.pk)
    assert managed(discord, LANCELOT) == []


def test_a_complimentary_membership_entitles_without_payment_with_the_usual_role(
    bulk_action, admin_web, superuser, discord
):
    guest = personas.member("lancelot", status=None, discord_id=LANCELOT)

    refused = bulk_action(admin_web, "grant_complimentary", [guest.pk], reason="")
    assert refused.status_code == 200 and not ComplimentaryMembership.objects.exists()

    bulk_action(admin_web, "grant_complimentary", [guest.pk], reason=REASON)

    member = Member.objects.get(pk=guest.pk)
    assert member_is_entitled(member)
    assert managed(discord, LANCELOT) == ["squire"]  # not introduced yet: the usual rules
    entry = AuditLog.objects.get(action="complimentary_granted")
    assert (entry.actor_id, entry.reason) == (str(superuser.pk), REASON)
    assert entry.details["ends_at"] is None
    states = dict(members_by_state(timezone.now()))
    assert states[BillingState.COMPLIMENTARY] == 1

    page = admin_web.get(reverse("admin:members_member_change", args=[member.pk]))
    assert b"Complimentary membership" in page.content and REASON.encode() in page.content


def test_an_expired_complimentary_membership_ends_through_the_normal_ending(
    bulk_action, admin_web, discord, django_capture_on_commit_callbacks
):
    guest = personas.member("lancelot", status=None, discord_id=LANCELOT, introduced_at=PAST)
    ends_at = timezone.now() + timedelta(days=30)
    bulk_action(
        admin_web,
        "grant_complimentary",
        [guest.pk],
        reason=REASON,
        ends_at=ends_at.strftime("%Y-%m-%d %H:%M:%S"),
    )
    assert managed(discord, LANCELOT) == ["lord"]

    with django_capture_on_commit_callbacks(execute=True):
        early = billing_tick(due_by=ends_at - timedelta(minutes=5))
    assert early.complimentary_ended == []
    with django_capture_on_commit_callbacks(execute=True):
        report = billing_tick(due_by=ends_at + timedelta(minutes=5))

    membership = ComplimentaryMembership.objects.get()
    assert report.complimentary_ended == [membership.pk] and membership.ended_at is not None
    member = Member.objects.get(pk=guest.pk)
    assert member.cancelled_at is not None and member.introduced_at is None
    assert not member_is_entitled(member)
    assert discord.member_roles(LANCELOT) is None  # farewell, roles removed, kicked
    farewell = Notification.objects.get(kind="farewell", recipient=LANCELOT)
    assert farewell.status == Notification.Status.SENT
    # A second tick ends nothing again.
    assert billing_tick(due_by=ends_at + timedelta(hours=1)).complimentary_ended == []


def test_ending_a_complimentary_membership_keeps_a_paying_member(bulk_action, admin_web, discord):
    payer = personas.member("lancelot", discord_id=LANCELOT, introduced_at=PAST)
    bulk_action(admin_web, "grant_complimentary", [payer.pk], reason=REASON)

    bulk_action(admin_web, "end_complimentary", [payer.pk], reason="Back on a paid plan now")

    member = Member.objects.get(pk=payer.pk)
    assert member.cancelled_at is None and member_is_entitled(member)
    assert managed(discord, LANCELOT) == ["lord"]
    assert AuditLog.objects.get(action="complimentary_ended").reason == "Back on a paid plan now"
    assert not Notification.objects.filter(kind="farewell").exists()
