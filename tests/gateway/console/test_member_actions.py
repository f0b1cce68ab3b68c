"""Member actions in the console: reason required, audited, stored as overrides that
``expected_role`` honours, and converged on the fake Discord by the role sync."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.roles import member_expected_role
from discordsync.tasks import sync_member_roles
from members.models import Member, Override
from ops.models import AuditLog
from tests import personas
from tests.personas import LANCELOT, ROLE_IDS

pytestmark = pytest.mark.django_db

REASON = "Abusive behaviour in #general, see ticket 123"


def managed(discord, user_id: str) -> list[str]:
    names = {v: k for k, v in ROLE_IDS.items()}
    return sorted(names[r] for r in discord.member_roles(user_id) or [] if r in names)


@pytest.fixture
def knight_lancelot(discord) -> Member:
    """An introduced individual member in the guild, holding the seat role."""
    member = personas.member("lancelot", discord_id=LANCELOT, introduced_at=timezone.now())
    sync_member_roles(member.pk)
    assert managed(discord, LANCELOT) == ["lord"]
    return member


def staff_audit(member: Member, action: str) -> AuditLog:
    return AuditLog.objects.get(target_type="member", target_id=str(member.pk), action=action)


def test_revoke_access_removes_roles_and_is_audited_with_the_reason(
    bulk_action, admin_web, superuser, discord, knight_lancelot
):
    first = bulk_action(admin_web, "revoke_access", [knight_lancelot.pk])
    assert first.status_code == 200  # the confirmation page, nothing done yet
    assert b"Revoke access" in first.content
    assert Member.objects.get(pk=knight_lancelot.pk).override == ""

    response = bulk_action(admin_web, "revoke_access", [knight_lancelot.pk], reason=REASON)

    assert response.status_code == 302
    member = Member.objects.get(pk=knight_lancelot.pk)
    assert member.override == Override.REVOKED and member.override_reason == REASON
    assert managed(discord, LANCELOT) == []
    assert discord.member_roles(LANCELOT) is not None  # revoked, not kicked
    entry = staff_audit(member, "member_access_revoked")
    assert (entry.actor_type, entry.actor_id, entry.actor_label, entry.reason) == (
        "staff",
        str(superuser.pk),
        "root@example.com",
        REASON,
    )


@pytest.mark.parametrize("reason", ["", "   ", "too short"])
def test_an_action_without_a_real_reason_is_refused_and_changes_nothing(
    bulk_action, admin_web, discord, knight_lancelot, reason
):
    response = bulk_action(admin_web, "revoke_access", [knight_lancelot.pk], reason=reason)

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert Member.objects.get(pk=knight_lancelot.pk).override == ""
    assert not AuditLog.objects.filter(actor_type="staff").exists()
    assert managed(discord, LANCELOT) == ["lord"]


def test_forced_role_survives_later_syncs_and_restore_returns_to_the_policy(
    bulk_action, admin_web, discord, knight_lancelot
):
    bulk_action(admin_web, "force_role", [knight_lancelot.pk], role="debtor", reason=REASON)

    member = Member.objects.get(pk=knight_lancelot.pk)
    assert (member.override, member.forced_role) == (Override.FORCED, "debtor")
    assert member_expected_role(member, timezone.now()) == "debtor"
    assert managed(discord, LANCELOT) == ["debtor"]
    assert staff_audit(member, "member_role_forced").details["role"] == "debtor"

    # What reconciliation does: converge to expected_role. The override holds.
    sync_member_roles(member.pk)
    assert managed(discord, LANCELOT) == ["debtor"]

    bulk_action(admin_web, "restore_access", [member.pk], reason="Cleared after the appeal")
    member.refresh_from_db()
    assert (member.override, member.forced_role) == ("", "")
    assert managed(discord, LANCELOT) == ["lord"]
    assert staff_audit(member, "member_access_restored").reason == "Cleared after the appeal"


def test_force_role_needs_a_valid_role(bulk_action, admin_web, knight_lancelot):
    response = bulk_action(
        admin_web, "force_role", [knight_lancelot.pk], role="emperor", reason=REASON
    )
    assert response.status_code == 200
    assert "role" in response.context["form"].errors
    assert Member.objects.get(pk=knight_lancelot.pk).override == ""


def test_reset_claim_unlinks_and_strips_roles_without_kicking(
    bulk_action, admin_web, discord, knight_lancelot
):
    bulk_action(admin_web, "reset_claim", [knight_lancelot.pk], reason=REASON)

    member = Member.objects.get(pk=knight_lancelot.pk)
    assert member.discord_id is None and member.discord_username == ""
    assert member.introduced_at is not None and member.subscription_id  # kept
    assert managed(discord, LANCELOT) == []
    assert discord.member_roles(LANCELOT) is not None  # still in the guild
    entry = staff_audit(member, "member_claim_reset")
    assert entry.details["discord_id"] == LANCELOT
    stripped = AuditLog.objects.get(action="discord_roles_stripped")
    assert stripped.details == {"discord_id": LANCELOT, "removed": ["lord"], "failed": []}


def test_resync_now_repairs_roles_changed_by_hand_in_discord(
    bulk_action, admin_web, discord, knight_lancelot
):
    discord.set_member_roles(LANCELOT, [ROLE_IDS["knight"], ROLE_IDS["squire"]])

    bulk_action(admin_web, "resync_now", [knight_lancelot.pk], reason="Roles edited by hand")

    assert managed(discord, LANCELOT) == ["lord"]
    assert staff_audit(knight_lancelot, "member_resync_requested").reason == "Roles edited by hand"


def test_bulk_revoke_applies_to_every_selected_member_and_reports_refusals(
    bulk_action, admin_web, discord
):
    lancelot = personas.member("lancelot", discord_id=LANCELOT, introduced_at=timezone.now())
    unlinked = personas.member("percival")
    untouched = personas.member("gawain")

    response = bulk_action(
        admin_web, "resync_now", [lancelot.pk, unlinked.pk], reason="Bulk check after outage"
    )
    assert response.status_code == 302
    assert managed(discord, LANCELOT) == ["lord"]
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("done for 1 member" in m for m in messages)
    assert any("percival@example.com has no Discord account linked" in m for m in messages)

    bulk_action(admin_web, "revoke_access", [lancelot.pk, unlinked.pk], reason=REASON)
    overrides = dict(Member.objects.values_list("pk", "override"))
    assert overrides == {lancelot.pk: "revoked", unlinked.pk: "revoked", untouched.pk: ""}
    assert AuditLog.objects.filter(action="member_access_revoked").count() == 2
    assert managed(discord, LANCELOT) == []


def test_detail_page_action_asks_for_a_reason_then_applies(
    committed, admin_web, discord, knight_lancelot
):
    url = reverse("admin:members_member_action", args=[knight_lancelot.pk, "revoke_access"])
    detail = admin_web.get(reverse("admin:members_member_change", args=[knight_lancelot.pk]))
    assert url.encode() in detail.content

    form = admin_web.get(url)
    assert form.status_code == 200 and b'name="reason"' in form.content

    refused = committed(admin_web.post, url, {"confirm": "yes", "reason": ""})
    assert refused.status_code == 200
    assert Member.objects.get(pk=knight_lancelot.pk).override == ""

    done = committed(admin_web.post, url, {"confirm": "yes", "reason": REASON})
    assert done.status_code == 302
    assert Member.objects.get(pk=knight_lancelot.pk).override == Override.REVOKED
    assert managed(discord, LANCELOT) == []
