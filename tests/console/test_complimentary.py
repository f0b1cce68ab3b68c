"""Complimentary memberships (SPEC §2a): staff grant access without payment, with a reason
and an optional end; a forced role only chooses the role of a member who is entitled."""

from __future__ import annotations

import pytest
from django.utils import timezone

from discordsync.selectors import member_expected_role
from discordsync.tasks import sync_member_roles
from members.models import Member
from tests.console.test_member_actions import REASON, managed
from tests.discordsync.conftest import LANCELOT, make_member

pytestmark = pytest.mark.django_db


def test_a_forced_role_never_grants_access_to_an_unpaid_member(bulk_action, admin_web, discord):
    unpaid = make_member("lancelot", status="canceled", discord_id=LANCELOT)

    bulk_action(admin_web, "force_role", [unpaid.pk], role="knight", reason=REASON)

    member = Member.objects.get(pk=unpaid.pk)
    assert member_expected_role(member, timezone.now()) is None
    sync_member_roles(member.pk)
    assert managed(discord, LANCELOT) == []
