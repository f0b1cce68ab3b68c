"""The staff console's member pages: billing state, expected role and the audited actions.

Members are changed only through audited actions that require a reason (revoke or restore
access, force a role, grant or end a complimentary membership, reset the Discord claim,
resync now), never by editing fields: every staff change must say who and why, and must be
state that ``expected_role`` honours. The pages show every floor at once (billing state,
Discord role), so they live on the top floor; ``gateway/admin.py`` registers them. Staff who
may only view members get one action, the CSV export (``gateway/exports.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing.entitlement import BillingState, with_entitlement
from billing.roles import member_expected_role
from billing.selectors import member_billing_summary
from billing.staff_services import (
    MIN_REASON_LENGTH,
    member_access_restore,
    member_access_revoke,
    member_claim_reset,
    member_complimentary_end,
    member_complimentary_grant,
    member_resync,
    member_role_force,
)
from gateway.exports import export_members
from members.models import ManagedRole, Member
from ops.admin_guard import GuardedModelAdmin
from ops.errors import ServiceError
from ops.models import AuditLog

# --- Member filters -------------------------------------------------------------------------


class StateFilter(admin.SimpleListFilter):
    title = "billing state"
    parameter_name = "state"
    ENTITLED = "entitled"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.ENTITLED, "Entitled (active, grace or complimentary)"), *BillingState.CHOICES]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == self.ENTITLED:
            return queryset.filter(entitled=True)
        if value in dict(BillingState.CHOICES):
            return queryset.filter(billing_state=value)
        return queryset


class _YesNoFilter(admin.SimpleListFilter):
    condition: Q

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(self.condition)
        if self.value() == "no":
            return queryset.exclude(self.condition)
        return queryset


class LinkedFilter(_YesNoFilter):
    title = "Discord linked"
    parameter_name = "linked"
    condition = Q(discord_id__isnull=False)


class IntroducedFilter(_YesNoFilter):
    title = "introduced"
    parameter_name = "introduced"
    condition = Q(introduced_at__isnull=False)


class DebtorFilter(_YesNoFilter):
    title = "Debtor"
    parameter_name = "debtor"
    condition = Q(billing_state=BillingState.DEBTOR)


# --- Member actions -------------------------------------------------------------------------


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        min_length=MIN_REASON_LENGTH,
        help_text=f"Required, at least {MIN_REASON_LENGTH} characters; stored in the audit log.",
    )


class ForceRoleForm(ReasonForm):
    role = forms.ChoiceField(choices=ManagedRole.choices)


class ComplimentaryForm(ReasonForm):
    ends_at = forms.DateTimeField(
        required=False,
        label="Ends at",
        help_text="Optional (UTC, e.g. 2027-01-31 23:59). Empty: until staff end it.",
    )


def _run_revoke(member: Member, actor: Any, data: dict) -> Member:
    return member_access_revoke(member=member, actor=actor, reason=data["reason"])


def _run_restore(member: Member, actor: Any, data: dict) -> Member:
    return member_access_restore(member=member, actor=actor, reason=data["reason"])


def _run_force(member: Member, actor: Any, data: dict) -> Member:
    return member_role_force(member=member, role=data["role"], actor=actor, reason=data["reason"])


def _run_grant_complimentary(member: Member, actor: Any, data: dict) -> Member:
    return member_complimentary_grant(
        member=member, actor=actor, reason=data["reason"], ends_at=data.get("ends_at")
    )


def _run_end_complimentary(member: Member, actor: Any, data: dict) -> Member:
    return member_complimentary_end(member=member, actor=actor, reason=data["reason"])


def _run_reset(member: Member, actor: Any, data: dict) -> Member:
    return member_claim_reset(member=member, actor=actor, reason=data["reason"])


def _run_resync(member: Member, actor: Any, data: dict) -> Member:
    return member_resync(member=member, actor=actor, reason=data["reason"])


# name → (title, form, service call, what the confirmation page warns about)
MEMBER_ACTIONS: dict[str, tuple[str, type[ReasonForm], Callable[..., Member], str]] = {
    "revoke_access": (
        "Revoke access",
        ReasonForm,
        _run_revoke,
        "Removes every managed role until access is restored. Billing is not touched.",
    ),
    "restore_access": (
        "Restore access",
        ReasonForm,
        _run_restore,
        "Clears the override: the role follows billing and the introduction again.",
    ),
    "force_role": (
        "Force a role",
        ForceRoleForm,
        _run_force,
        "Chooses the role of an entitled member (billing and introduction aside), until "
        "access is restored. It never grants access: use a complimentary membership for that.",
    ),
    "grant_complimentary": (
        "Grant a complimentary membership",
        ComplimentaryForm,
        _run_grant_complimentary,
        "Entitles the member without a subscription, until the end date or until staff end "
        "it; they get the role the usual rules give (Squire until introduced).",
    ),
    "end_complimentary": (
        "End the complimentary membership",
        ReasonForm,
        _run_end_complimentary,
        "Ends it now. Unless a paid subscription still entitles the member: farewell, roles "
        "removed and kicked, as at any other ending.",
    ),
    "reset_claim": (
        "Reset Discord claim",
        ReasonForm,
        _run_reset,
        "Removes the managed roles and unlinks the Discord account; the member must claim "
        "again. Subscription and introduction are kept.",
    ),
    "resync_now": (
        "Resync roles now",
        ReasonForm,
        _run_resync,
        "Converges Discord to the expected role right away.",
    ),
}


def _table(headers: list[str], rows: list[tuple], empty: str) -> str:
    if not rows:
        return format_html("<p>{}</p>", empty)
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((c,) for c in row)),) for row in rows),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "—"


@admin.register(Member)
class MemberAdmin(GuardedModelAdmin):
    list_display = [
        "__str__",
        "state",
        "seat_tier",
        "team",
        "discord_username",
        "introduced",
        "override",
        "role_sync_status",
        "paid_at",
    ]
    list_filter = [
        StateFilter,
        "seat_tier",
        LinkedFilter,
        IntroducedFilter,
        DebtorFilter,
        "override",
        "role_sync_status",
    ]
    search_fields = ["user__email", "discord_username", "discord_id", "team__name"]
    list_select_related = ["user", "team"]
    actions = [export_members]
    change_form_template = "admin/members/member/change_form.html"
    fieldsets = (
        ("Member", {"fields": ("email", "team", "seat_tier", "paid_at", "cancelled_at")}),
        ("Subscription", {"fields": ("subscription_section",)}),
        (
            "Discord",
            {
                "fields": (
                    "discord_id",
                    "discord_username",
                    "linked_at",
                    "in_guild",
                    "introduced_at",
                )
            },
        ),
        ("Roles", {"fields": ("roles_section",)}),
        ("Staff override", {"fields": ("override", "forced_role", "override_reason")}),
        ("Audit trail", {"fields": ("audit_section",)}),
        ("Notifications sent", {"fields": ("notifications_section",)}),
    )
    readonly_fields = [
        "email",
        "team",
        "seat_tier",
        "paid_at",
        "cancelled_at",
        "subscription_section",
        "discord_id",
        "discord_username",
        "linked_at",
        "in_guild",
        "introduced_at",
        "roles_section",
        "override",
        "forced_role",
        "override_reason",
        "audit_section",
        "notifications_section",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Member]:
        return with_entitlement(super().get_queryset(request), timezone.now())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # members come from sign-up and seat claims

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # history is evidence; revoke access instead

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # The export needs the view permission only; the audited changes need change.
        exports = super().get_actions(request)
        if not self.has_change_permission(request):
            return exports
        changes = {
            name: (self._bulk_action(name), name, title)
            for name, (title, *_rest) in MEMBER_ACTIONS.items()
        }
        return {**changes, **exports}

    # -- list columns ----------------------------------------------------------------------

    @admin.display(description="State", ordering="billing_state")
    def state(self, obj: Member) -> str:
        return dict(BillingState.CHOICES).get(getattr(obj, "billing_state", ""), "—")

    @admin.display(description="Introduced", boolean=True, ordering="introduced_at")
    def introduced(self, obj: Member) -> bool:
        return obj.introduced_at is not None

    @admin.display(description="Email")
    def email(self, obj: Member) -> str:
        return obj.user.email or "—"

    # -- detail sections -------------------------------------------------------------------

    @admin.display(description="Subscription")
    def subscription_section(self, obj: Member) -> str:
        summary = member_billing_summary(obj)
        complimentary = obj.complimentary_memberships.filter(ended_at__isnull=True).first()
        comp_rows = []
        if complimentary is not None:
            until = _when(complimentary.ends_at) if complimentary.ends_at else "until ended"
            comp_rows = [
                ("Complimentary membership", f"{until} — granted by {complimentary.granted_by}"),
                ("Complimentary reason", complimentary.reason),
            ]
        if not summary.subscription_id:
            if comp_rows:
                return _table(["", ""], comp_rows, "")
            return "No subscription."
        rows = [
            *comp_rows,
            ("Subscription", summary.subscription_id),
            ("Status", summary.status or "not mirrored yet"),
            ("Plan", summary.plan_name or "—"),
            ("Discount", "; ".join(summary.discounts) or "none"),
            ("Trial until", _when(summary.trial_end)),
            ("Current period ends", _when(summary.period_end)),
            ("Cancels at period end", "yes" if summary.cancel_at_period_end else "no"),
            ("Entitled", "yes" if summary.entitled else "no"),
            ("Payment failure", "open" if summary.in_failure else "none"),
            ("Grace ends", _when(summary.grace_ends_at)),
            ("Debtor", "yes" if summary.in_debtor else "no"),
            ("Payment disputed (access suspended)", "yes" if summary.suspended else "no"),
            ("Removal due", _when(summary.removal_due_at)),
        ]
        return _table(["", ""], rows, "")

    @admin.display(description="Expected vs reported")
    def roles_section(self, obj: Member) -> str:
        expected = member_expected_role(obj, timezone.now()) if obj.discord_id else None
        reported = ", ".join(obj.discord_roles or []) or "none"
        rows = [
            ("Expected role (policy)", expected or "no managed role"),
            ("Roles Discord last reported", reported),
            ("Last sync", _when(obj.roles_synced_at)),
            ("Sync status", obj.get_role_sync_status_display()),
            ("Sync error", obj.role_sync_error or "—"),
        ]
        return _table(["", ""], rows, "")

    @admin.display(description="Audit trail (latest 50)")
    def audit_section(self, obj: Member) -> str:
        entries = AuditLog.objects.filter(target_type="member", target_id=str(obj.pk))[:50]
        rows = [
            (_when(e.created_at), e.get_actor_type_display(), e.actor_label, e.action, e.reason)
            for e in entries
        ]
        return _table(["When", "Actor", "Who", "Action", "Reason"], rows, "No audit entries.")

    @admin.display(description="Notifications (latest 50)")
    def notifications_section(self, obj: Member) -> str:
        rows = [
            (
                _when(n.created_at),
                n.kind,
                n.get_channel_display(),
                n.get_status_display(),
                _when(n.sent_at),
            )
            for n in obj.notifications.all()[:50]
        ]
        return _table(["Queued", "Kind", "Channel", "Status", "Sent"], rows, "No messages.")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        # Nothing is edited here: changes go through the audited actions linked on the page.
        extra = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "member_actions": [
                (reverse("admin:members_member_action", args=[object_id, name]), spec[0])
                for name, spec in MEMBER_ACTIONS.items()
            ]
            if self.has_change_permission(request)
            else [],
        }
        return super().change_view(request, object_id, form_url, extra)

    # -- actions with a reason -------------------------------------------------------------

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.member_action_view)
        return [
            path("<path:object_id>/action/<str:name>/", view, name="members_member_action"),
            *super().get_urls(),
        ]

    def member_action_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        """One member's action from the detail page: the same reason form as the bulk action."""
        if name not in MEMBER_ACTIONS:
            raise PermissionDenied
        member = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, member):
            raise PermissionDenied
        response = self._confirm_and_run(request, name, [member], single=True)
        if response is None:
            return HttpResponseRedirect(reverse("admin:members_member_change", args=[member.pk]))
        return response

    def _bulk_action(self, name: str) -> Callable[..., HttpResponse | None]:
        def action(modeladmin: MemberAdmin, request: HttpRequest, queryset: QuerySet) -> Any:
            if not self.has_change_permission(request):
                raise PermissionDenied
            return self._confirm_and_run(request, name, list(queryset), single=False)

        action.__name__ = name
        return action

    def _confirm_and_run(
        self, request: HttpRequest, name: str, members: list[Member], *, single: bool
    ) -> HttpResponse | None:
        """Show the confirmation page; on a confirmed POST with a valid reason, run the action.

        Returns None when done (the caller redirects), or the page to show.
        """
        title, form_class, run, warning = MEMBER_ACTIONS[name]
        confirmed = request.method == "POST" and request.POST.get("confirm") == "yes"
        form = form_class(request.POST if confirmed else None)
        if confirmed and form.is_valid():
            done, failed = 0, []
            for member in members:
                try:
                    run(member, request.user, form.cleaned_data)
                    done += 1
                except ServiceError as exc:
                    failed.append(str(exc))
            if done:
                self.message_user(request, f"{title}: done for {done} member(s).", messages.SUCCESS)
            for error in failed:
                self.message_user(request, error, messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"{title}: confirm",
            "opts": self.model._meta,
            "action_name": name,
            "action_title": title,
            "warning": warning,
            "form": form,
            "members": members,
            "single": single,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/members/member/action_confirm.html", context)
