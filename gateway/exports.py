"""CSV exports of the member and team lists, for staff.

One admin action on each list, "Export selected as CSV". The admin hands it the rows ticked
on the page or, after "Select all N" (Django's ``select_across``), every row the current
filters and search match: one action exports a few members or the whole filtered list. The
selection decides which rows; this module decides the columns, so a list sorted, filtered or
annotated by the admin exports the same columns as any other.

The response streams: one query reads the rows with ``values()`` through ``.iterator()``
(a server-side cursor on PostgreSQL) and ``csv.writer`` turns each chunk into text as it is
sent, so memory stays flat whatever the number of rows (``bench/exports.py`` measures
100,000). The columns are an allowlist: no password hash, invite token, Stripe customer or
Checkout id, no key of any kind. A cell a spreadsheet would read as a formula gets a leading
``'`` (OWASP's CSV injection advice): names and Discord usernames are typed by members.
Every export is audited (who, which list, how many rows, with which filters).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from billing.entitlement import subscription_status_sql, with_entitlement
from billing.roles import expected_role, introduction_required, role_facts
from members.models import Member, Team
from members.selectors import with_seats_claimed
from ops.models import AuditAction
from ops.services import audit_actor, audit_record

CHUNK_ROWS = 2000  # rows per database fetch and per piece of the response
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

MEMBER_HEADER = [
    "id",
    "email",
    "discord_username",
    "discord_id",
    "plan",
    "team",
    "seat_tier",
    "subscription_id",
    "subscription_status",
    "billing_state",
    "entitled",
    "expected_role",
    "introduced_at",
    "paid_at",
    "cancelled_at",
    "linked_at",
    "date_joined",
]

TEAM_HEADER = [
    "id",
    "name",
    "owner_email",
    "subscription_id",
    "subscription_status",
    "owner_seats_paid",
    "owner_seats_claimed",
    "team_seats_paid",
    "team_seats_claimed",
    "created_at",
    "cancelled_at",
]


def cell(value: Any) -> Any:
    """One value as the CSV shows it: dates in UTC (ISO 8601), yes/no, formulas defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """``csv.writer`` writes a row here and gets the line back (Django's streaming CSV recipe)."""

    def write(self, value: str) -> str:
        return value


def csv_text(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    """The CSV text, one piece per ``CHUNK_ROWS`` rows (a piece per row would make 100,000
    writes to the socket)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    lines: list[str] = []
    for row in rows:
        lines.append(writer.writerow([cell(value) for value in row]))
        if len(lines) == CHUNK_ROWS:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


# --- rows -----------------------------------------------------------------------------------


def member_rows(selection: QuerySet[Member], now: datetime) -> Iterator[list[Any]]:
    """The members of ``selection`` (any member queryset), in ``MEMBER_HEADER``'s order."""
    rows = (
        with_entitlement(Member.objects.filter(pk__in=selection.values("pk")), now)
        .order_by("pk")
        .values(
            "pk",
            "user__email",
            "discord_username",
            "discord_id",
            "team_id",
            "team__name",
            "seat_tier",
            "subscription_id",
            "billing_subscription",
            "subscription_status",
            "billing_state",
            "entitled",
            "access",
            "override",
            "forced_role",
            "introduced_at",
            "paid_at",
            "cancelled_at",
            "linked_at",
            "user__date_joined",
        )
    )
    required = introduction_required()  # one flag read for the whole export
    for row in rows.iterator(chunk_size=CHUNK_ROWS):
        if row["team_id"] is not None:
            plan = "company"
        else:
            plan = "individual" if row["subscription_id"] else "none"
        role = expected_role(
            role_facts(
                linked=bool(row["discord_id"]),
                access=row["access"],
                introduced=row["introduced_at"] is not None,
                seat_tier=row["seat_tier"],
                override=row["override"],
                forced_role=row["forced_role"],
                introduction_required=required,
            )
        )
        yield [
            row["pk"],
            row["user__email"],
            row["discord_username"],
            row["discord_id"],
            plan,
            row["team__name"],
            row["seat_tier"],
            row["billing_subscription"],
            row["subscription_status"],
            row["billing_state"],
            row["entitled"],
            role,
            row["introduced_at"],
            row["paid_at"],
            row["cancelled_at"],
            row["linked_at"],
            row["user__date_joined"],
        ]


def team_rows(selection: QuerySet[Team]) -> Iterator[list[Any]]:
    """The teams of ``selection`` (any team queryset), in ``TEAM_HEADER``'s order."""
    rows = (
        with_seats_claimed(Team.objects.filter(pk__in=selection.values("pk")))
        .annotate(status=subscription_status_sql(OuterRef("subscription_id")))
        .order_by("pk")
        .values_list(
            "pk",
            "name",
            "primary_owner__user__email",
            "subscription_id",
            "status",
            "owner_seats",
            "owners_used",
            "team_seats",
            "team_used",
            "created_at",
            "cancelled_at",
        )
    )
    for row in rows.iterator(chunk_size=CHUNK_ROWS):
        yield list(row)


# --- the response ---------------------------------------------------------------------------


def export_response(
    *,
    request: HttpRequest,
    name: str,
    selection: QuerySet,
    header: list[str],
    rows: Iterable[list[Any]],
) -> StreamingHttpResponse:
    """Audit the export, then stream it as ``<name>-YYYYMMDD-HHMM.csv``."""
    audit_record(
        **audit_actor(request.user),
        action=AuditAction.EXPORT_DOWNLOADED,
        details={
            "export": name,
            "rows": selection.count(),
            "all_filtered": request.POST.get("select_across") == "1",
            "filters": request.GET.urlencode(),
        },
    )
    response = StreamingHttpResponse(csv_text(header, rows), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


@admin.action(description="Export selected as CSV", permissions=["view"])
def export_members(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Member]) -> Any:
    rows = member_rows(queryset, timezone.now())
    return export_response(
        request=request, name="members", selection=queryset, header=MEMBER_HEADER, rows=rows
    )


@admin.action(description="Export selected as CSV", permissions=["view"])
def export_teams(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Team]) -> Any:
    return export_response(
        request=request,
        name="teams",
        selection=queryset,
        header=TEAM_HEADER,
        rows=team_rows(queryset),
    )
