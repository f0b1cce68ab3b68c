"""Feature flags (each with a consumer), database settings and "run reconciliation now"."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.roles import member_expected_role
from ops.flags import KNOWN_FLAGS, flag_enabled
from ops.models import AuditLog, FeatureFlag, GatewayConfig, ReconciliationRun
from tests import personas
from tests.gateway.console.pages import changelist
from tests.personas import LANCELOT

pytestmark = pytest.mark.django_db


def test_a_missing_flag_row_means_its_default(db):
    FeatureFlag.objects.filter(key="require_introduction").delete()
    assert flag_enabled("require_introduction", True) is True
    assert flag_enabled("require_introduction", False) is False


def test_switching_require_introduction_off_changes_the_expected_role_and_is_audited(
    admin_web, superuser
):
    member = personas.member("lancelot", discord_id=LANCELOT)  # paid, not introduced
    assert member_expected_role(member, timezone.now()) == "squire"
    flag, _ = FeatureFlag.objects.get_or_create(
        key="require_introduction", defaults={"enabled": True}
    )

    response = admin_web.post(
        reverse("admin:ops_featureflag_change", args=[flag.pk]), {"enabled": ""}
    )

    assert response.status_code == 302
    assert member_expected_role(member, timezone.now()) == "lord"
    entry = AuditLog.objects.get(action="feature_flag.set")
    assert entry.details == {"key": "require_introduction", "previous": True, "enabled": False}
    assert entry.actor_label == "root@example.com"


def test_only_flags_the_code_reads_can_be_added(admin_web):
    FeatureFlag.objects.filter(key="require_introduction").delete()
    add = reverse("admin:ops_featureflag_add")

    refused = admin_web.post(add, {"key": "dark_mode", "enabled": "on"})
    assert refused.status_code == 200 and not FeatureFlag.objects.filter(key="dark_mode").exists()

    admin_web.post(add, {"key": "require_introduction"})
    assert FeatureFlag.objects.get(key="require_introduction").enabled is False
    assert set(KNOWN_FLAGS) == {"require_introduction"}
    listing = admin_web.get(changelist("ops.featureflag")).content.decode()
    assert "billing.roles.introduction_required" in listing


def test_gateway_settings_are_one_row_without_add_or_delete_and_edits_are_audited(admin_web):
    config = GatewayConfig.load()
    listing = admin_web.get(changelist("ops.gatewayconfig"))
    assert listing.status_code == 302
    url = reverse("admin:ops_gatewayconfig_change", args=[config.pk])
    assert listing["Location"] == url
    assert admin_web.get(reverse("admin:ops_gatewayconfig_add")).status_code == 403
    assert (
        admin_web.get(reverse("admin:ops_gatewayconfig_delete", args=[config.pk])).status_code
        == 403
    )

    form = admin_web.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data = {k: ("on" if v is True else v) for k, v in data.items() if v is not False}
    data["grace_hours"] = 72
    assert admin_web.post(url, data).status_code == 302

    assert GatewayConfig.load().grace_hours == 72
    entry = AuditLog.objects.get(action="gateway_config.updated")
    assert entry.details == {"changes": {"grace_hours": {"previous": 48, "new": 72}}}


def test_run_now_queues_an_audited_admin_run(admin_web, superuser):
    page = admin_web.get(changelist("ops.reconciliationrun")).content.decode()
    run_url = reverse("admin:ops_reconciliationrun_run")
    assert run_url in page

    response = admin_web.post(run_url, {"fix": "on"})

    assert response.status_code == 302
    run = ReconciliationRun.objects.get()
    assert (run.trigger, run.fix, run.status) == ("admin", True, "scheduled")
    entry = AuditLog.objects.get(action="reconciliation_requested")
    assert entry.actor_id == str(superuser.pk)
