"""Staff export the member and team lists as CSV: the selected rows or, with "Select all", the
whole filtered list; streamed in a fixed number of queries; no secret in any cell; formulas
defused; allowed to staff who may view the list, and audited."""

from __future__ import annotations

import csv
import io
import re
import secrets

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from sesame.utils import get_token

from billing.roles import member_expected_role
from gateway.exports import FORMULA_STARTS, cell
from members.models import Invite, Member, SeatTier, Team, User
from ops.models import AuditLog
from tests import personas
from tests.gateway.console.pages import changelist
from tests.personas import LANCELOT

pytestmark = pytest.mark.django_db

FILENAME = re.compile(r'^attachment; filename="(members|teams)-\d{8}-\d{4}\.csv"$')


def export(
    client: Client, model: str, pks: list[int], *, select_across: bool = False, query: str = ""
):
    """Choose "Export selected as CSV" on the changelist (``query``: its filters), as the page's
    form posts it; ``select_across`` is the "Select all N" link."""
    action = "export_members" if model == "members.member" else "export_teams"
    data = {"action": action, "index": "0", "_selected_action": [str(pk) for pk in pks]}
    if select_across:
        data["select_across"] = "1"
    return client.post(changelist(model) + query, data)


def read(response) -> list[dict[str, str]]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def by_id(rows: list[dict[str, str]]) -> dict[int, dict[str, str]]:
    return {int(row["id"]): row for row in rows}


def test_member_export_shows_plan_billing_state_and_the_policy_role(admin_web):
    lord = personas.lord("percival", paid_at=timezone.now())
    owner = personas.company_owner("Camelot Ltd", seats_claimed=1)
    debtor = personas.debtor("mordred")
    guest = personas.complimentary("dagonet")

    response = export(admin_web, "members.member", [lord.pk], select_across=True)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert FILENAME.match(response["Content-Disposition"])
    rows = by_id(read(response))
    assert len(rows) == Member.objects.count() == 5
    row = rows[lord.pk]
    assert row["email"] == "percival@example.com"
    assert (row["discord_username"], row["discord_id"]) == ("percival", LANCELOT)
    assert (row["plan"], row["team"], row["seat_tier"]) == ("individual", "", "individual")
    assert (row["subscription_id"], row["subscription_status"]) == ("sub_percival", "active")
    assert (row["billing_state"], row["entitled"]) == ("active", "yes")
    assert row["paid_at"] == lord.paid_at.isoformat(timespec="seconds")
    assert row["introduced_at"] and row["linked_at"] and row["date_joined"]
    assert row["cancelled_at"] == ""
    seat = rows[owner.pk]
    assert (seat["plan"], seat["team"], seat["seat_tier"]) == ("company", "Camelot Ltd", "owner")
    assert seat["subscription_id"] == owner.team.subscription_id
    assert (rows[debtor.pk]["billing_state"], rows[debtor.pk]["entitled"]) == ("debtor", "no")
    assert (rows[guest.pk]["plan"], rows[guest.pk]["billing_state"]) == ("none", "complimentary")
    now = timezone.now()
    for member in Member.objects.select_related("team"):
        assert rows[member.pk]["expected_role"] == (member_expected_role(member, now) or "")


def test_team_export_shows_seats_paid_and_claimed_per_tier(admin_web):
    team = personas.company("Camelot Ltd", owner_seats=3, team_seats=5, seats_claimed=2)
    personas.company("Avalon plc", status="canceled")

    response = export(admin_web, "members.team", [team.pk])

    assert response.status_code == 200
    assert FILENAME.match(response["Content-Disposition"])
    assert response["Content-Disposition"].startswith('attachment; filename="teams-')
    (row,) = read(response)
    assert row == {
        "id": str(team.pk),
        "name": "Camelot Ltd",
        "owner_email": f"owner-{team.pk}@example.com",
        "subscription_id": "sub_team_camelot",
        "subscription_status": "active",
        "owner_seats_paid": "3",
        "owner_seats_claimed": "1",
        "team_seats_paid": "5",
        "team_seats_claimed": "2",
        "created_at": team.created_at.isoformat(timespec="seconds"),
        "cancelled_at": "",
    }


def test_select_all_exports_the_whole_filtered_list_not_only_the_page(admin_web):
    debtors = [personas.debtor(f"mordred{n}") for n in range(3)]
    personas.lord("percival")
    personas.complimentary("dagonet")

    # The page shows one debtor ticked; "Select all 3" sends select_across with the filter.
    everything = export(
        admin_web, "members.member", [debtors[0].pk], select_across=True, query="?state=debtor"
    )
    ticked = export(admin_web, "members.member", [debtors[0].pk], query="?state=debtor")

    assert sorted(by_id(read(everything))) == sorted(d.pk for d in debtors)
    assert list(by_id(read(ticked))) == [debtors[0].pk]


def test_search_and_filters_narrow_the_team_export(admin_web):
    camelot = personas.company("Camelot Ltd")
    personas.company("Avalon plc")

    response = export(admin_web, "members.team", [camelot.pk], select_across=True, query="?q=Cam")

    assert [row["name"] for row in read(response)] == ["Camelot Ltd"]


def test_no_password_hash_token_or_key_reaches_either_export(admin_web, superuser):
    team = personas.company("Camelot Ltd", seats_claimed=1)
    Team.objects.filter(pk=team.pk).update(
        stripe_customer_id="cus_camelot_private", checkout_session_id="cs_test_camelot_private"
    )
    invite = Invite.objects.create(team=team, tier=SeatTier.TEAM, token=secrets.token_urlsafe(32))
    lord = personas.lord("percival", stripe_customer_id="cus_percival_private")
    users = [lord.user, team.primary_owner.user, superuser]
    secret_values = [
        *(user.password for user in User.objects.filter(pk__in=[u.pk for u in users])),
        *(get_token(user) for user in users),  # magic-link tokens
        invite.token,
        "cus_camelot_private",
        "cs_test_camelot_private",
        "cus_percival_private",
        settings.SECRET_KEY,
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_WEBHOOK_SECRET,
        settings.DISCORD_BOT_TOKEN,
        settings.DISCORD_CLIENT_SECRET,
    ]
    assert all(secret_values)

    members = export(admin_web, "members.member", [lord.pk], select_across=True)
    teams = export(admin_web, "members.team", [team.pk], select_across=True)

    text = b"".join([*members.streaming_content, *teams.streaming_content]).decode()
    assert "percival@example.com" in text and "Camelot Ltd" in text
    for value in secret_values:
        assert value not in text


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote(start):
    assert cell(f'{start}HYPERLINK("https://evil.example")') == (
        f'\'{start}HYPERLINK("https://evil.example")'
    )


def test_plain_cells_are_left_alone():
    assert cell("percival@example.com") == "percival@example.com"
    assert cell("Camelot-Ltd") == "Camelot-Ltd"
    assert cell(-3) == -3  # a number is not a formula
    assert (cell(None), cell(True), cell(False)) == ("", "yes", "no")


def test_names_members_typed_are_defused_in_the_export(admin_web):
    team = personas.company("=cmd|' /C calc'!A0", seats_claimed=0)
    personas.discord_only_seat(team, discord_id="900000000000000001", username="@SUM(1+1)")
    personas.member("percival", discord_id="900000000000000002", discord_username="-2+3")

    members = read(export(admin_web, "members.member", [team.primary_owner.pk], select_across=True))
    teams = read(export(admin_web, "members.team", [team.pk]))

    assert {row["discord_username"] for row in members} >= {"'@SUM(1+1)", "'-2+3"}
    assert {row["team"] for row in members} == {"", "'=cmd|' /C calc'!A0"}
    assert teams[0]["name"] == "'=cmd|' /C calc'!A0"


def test_staff_who_may_view_members_export_them_but_change_nothing(db):
    viewer = User.objects.create_user("viewer@example.com", "x" * 20, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_member"))
    member = personas.lord("percival")
    client = personas.client_for(viewer)

    listing = client.get(changelist("members.member"))
    response = export(client, "members.member", [member.pk])

    assert b"export_members" in listing.content
    assert b"revoke_access" not in listing.content
    assert [row["email"] for row in read(response)] == ["percival@example.com"]


def test_staff_without_the_view_permission_are_refused_and_nothing_is_audited(db):
    staff = User.objects.create_user("clerk@example.com", "x" * 20, is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_member"))
    member = personas.company_owner("Camelot Ltd")
    client = personas.client_for(staff)

    assert export(client, "members.team", [member.team_id]).status_code == 403
    staff.user_permissions.clear()
    client = personas.client_for(User.objects.get(pk=staff.pk))
    assert export(client, "members.member", [member.pk]).status_code == 403
    assert not AuditLog.objects.filter(action="export_downloaded").exists()


def test_every_export_is_audited_with_its_scope(admin_web, superuser):
    debtor = personas.debtor("mordred")
    personas.lord("percival")

    read(export(admin_web, "members.member", [debtor.pk], select_across=True, query="?debtor=yes"))
    read(export(admin_web, "members.team", [personas.company("Camelot Ltd").pk]))

    member_entry, team_entry = AuditLog.objects.filter(action="export_downloaded").order_by("pk")
    assert (member_entry.actor_type, member_entry.actor_id, member_entry.actor_label) == (
        "staff",
        str(superuser.pk),
        "root@example.com",
    )
    assert member_entry.details == {
        "export": "members",
        "rows": 1,
        "all_filtered": True,
        "filters": "debtor=yes",
    }
    assert team_entry.details == {
        "export": "teams",
        "rows": 1,
        "all_filtered": False,
        "filters": "",
    }


def _bulk_members(count: int, start: int) -> None:
    users = User.objects.bulk_create(
        User(email=f"member{start + n}@example.com", password="!") for n in range(count)
    )
    Member.objects.bulk_create(
        Member(user=user, subscription_id=f"sub_bulk_{start + n}", paid_at=timezone.now())
        for n, user in enumerate(users)
    )


def _export_queries(client: Client) -> tuple[int, int]:
    """(queries, rows) of exporting every member, the streamed body read to the end."""
    first = Member.objects.order_by("pk").first()
    with CaptureQueriesContext(connection) as queries:
        rows = read(export(client, "members.member", [first.pk], select_across=True))
    return len(queries), len(rows)


def test_the_export_streams_in_a_number_of_queries_independent_of_the_rows(admin_web):
    _bulk_members(50, 0)
    small, small_rows = _export_queries(admin_web)
    _bulk_members(450, 50)
    large, large_rows = _export_queries(admin_web)

    assert (small_rows, large_rows) == (50, 500)
    assert small == large <= 10, small
