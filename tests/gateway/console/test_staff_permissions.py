"""Support staff work with members; settings, flags, wording and staff accounts stay with
superusers."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from members.models import Member, Override
from ops.models import FeatureFlag, GatewayConfig
from tests import personas
from tests.gateway.console.pages import changelist
from tests.personas import LANCELOT

pytestmark = pytest.mark.django_db


def test_support_group_holds_member_rights_but_no_settings_flags_or_accounts(support_user):
    assert support_user.has_perm("members.change_member")
    assert support_user.has_perm("ops.view_auditlog")
    assert support_user.has_perm("billing.view_stripeeventinbox")
    assert support_user.has_perm("ops.view_reconciliationrun")
    for perm in (
        "ops.change_gatewayconfig",
        "ops.change_featureflag",
        "ops.add_featureflag",
        "ops.change_messagetemplate",
        "ops.add_reconciliationrun",
        "members.change_user",
        "members.view_user",
        "auth.change_group",
        "billing.change_stripeeventinbox",
    ):
        assert not support_user.has_perm(perm), perm


def test_support_can_run_member_actions(support_web, support_user, discord, bulk_action):
    member = personas.member("lancelot", discord_id=LANCELOT, introduced_at=timezone.now())

    response = bulk_action(support_web, "revoke_access", [member.pk], reason="Support ticket 77")

    assert response.status_code == 302
    assert Member.objects.get(pk=member.pk).override == Override.REVOKED


def test_support_is_refused_settings_flags_and_staff_accounts(support_web, superuser):
    config = GatewayConfig.load()
    flag, _ = FeatureFlag.objects.get_or_create(key="require_introduction")
    config_url = reverse("admin:ops_gatewayconfig_change", args=[config.pk])
    flag_url = reverse("admin:ops_featureflag_change", args=[flag.pk])

    # Viewing settings is allowed (read-only page), changing them is not.
    assert b'name="_save"' not in support_web.get(config_url).content
    assert support_web.post(config_url, {"grace_hours": 1}).status_code == 403
    assert support_web.post(flag_url, {"enabled": ""}).status_code == 403
    assert support_web.get(reverse("admin:ops_featureflag_add")).status_code == 403
    assert support_web.get(reverse("admin:ops_messagetemplate_add")).status_code == 403
    assert support_web.get(reverse("admin:ops_reconciliationrun_run")).status_code == 403
    assert support_web.get(changelist("members.user")).status_code == 403
    user_url = reverse("admin:members_user_change", args=[superuser.pk])
    assert support_web.post(user_url, {"email": "x@example.com"}).status_code == 403
    assert support_web.get(reverse("admin:members_user_add")).status_code == 403
    assert GatewayConfig.load().grace_hours == 48
    assert FeatureFlag.objects.get(pk=flag.pk).enabled


def test_actions_are_absent_for_staff_who_may_only_view_members(db, support_group):
    from django.contrib.auth.models import Permission

    from members.models import User
    from tests import personas

    viewer = User.objects.create_user("viewer@example.com", "x" * 20, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_member"))
    member = personas.member("lancelot")
    client = personas.client_for(viewer)

    listing = client.get(changelist("members.member"))
    assert listing.status_code == 200
    assert b"revoke_access" not in listing.content
    url = reverse("admin:members_member_action", args=[member.pk, "revoke_access"])
    assert client.post(url, {"confirm": "yes", "reason": "x" * 20}).status_code == 403
    assert Member.objects.get(pk=member.pk).override == ""
