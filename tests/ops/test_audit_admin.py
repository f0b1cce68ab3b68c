"""The audit log's filters name every choice, entries about no object included."""

from __future__ import annotations

import pytest
from django.urls import reverse

from ops.models import AuditAction, AuditActor
from ops.services import audit_record
from tests import personas

pytestmark = pytest.mark.django_db


def test_entries_about_no_object_have_a_named_filter_that_selects_them(stripe_server):
    member = personas.buyer("ada@example.org")
    audit_record(actor_type=AuditActor.STAFF, action=AuditAction.EXPORT_DOWNLOADED)
    audit_record(actor_type=AuditActor.STAFF, action=AuditAction.EXPORT_DOWNLOADED, target=member)
    staff = personas.client_for(personas.superuser())
    url = reverse("admin:ops_auditlog_changelist")

    page = staff.get(url).content.decode()
    assert '<a href="?target_type=-">(no target)</a>' in page
    assert '<a href="?target_type=member">member</a>' in page

    unattached = staff.get(url, {"target_type": "-"})
    assert [entry.target_type for entry in unattached.context["cl"].result_list] == [""]
    attached = staff.get(url, {"target_type": "member"})
    assert [entry.target_id for entry in attached.context["cl"].result_list] == [str(member.pk)]
