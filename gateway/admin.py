"""The top floor's admin pages: reconciliation runs and "run now", the staff devices, and the
team list's CSV export (it reads the subscriptions' status, so ``members/admin.py``'s team
pages gain it here).

django-otp's device admins show each device's secret key and recovery codes: not in ours.
Devices are created by the enrolment page and removed by ``manage.py staff_otp_reset``.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from gateway import member_admin  # noqa: F401 - registers the member pages
from gateway.exports import export_teams
from gateway.reconciliation import ReconciliationBusy, reconciliation_start
from members.admin import TeamAdmin as MembersTeamAdmin
from members.models import Team
from ops.admin_guard import ReadOnlyAdmin
from ops.models import ReconciliationRun

for _model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


admin.site.unregister(Team)


@admin.register(Team)
class TeamAdmin(MembersTeamAdmin):
    """``members/admin.py``'s team pages, with the CSV export."""

    actions = [export_teams]


class ReconciliationRunForm(forms.Form):
    fix = forms.BooleanField(
        required=False,
        label="Fix drift",
        help_text="Off: report only. On: repair drift and schedule a verification run.",
    )


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    """Stored runs (read-only) and "run now", which starts one through the worker."""

    change_list_template = "admin/ops/reconciliationrun/change_list.html"
    list_display = [
        "pk",
        "status",
        "trigger",
        "fix",
        "is_verification",
        "started_at",
        "finished_at",
        "finding_count",
    ]
    list_filter = ["status", "trigger", "fix", "is_verification"]
    readonly_fields = [
        "status",
        "trigger",
        "fix",
        "is_verification",
        "scheduled_for",
        "started_at",
        "finished_at",
        "counts",
        "findings",
        "fixes",
        "error",
    ]

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ops.add_reconciliationrun")

    @admin.display(description="Findings")
    def finding_count(self, obj: ReconciliationRun) -> int:
        return len(obj.findings or [])

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.run_now_view)
        return [path("run-now/", view, name="ops_reconciliationrun_run"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra = {**(extra_context or {}), "can_run": self.has_run_permission(request)}
        return super().changelist_view(request, extra)

    def run_now_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_run_permission(request):
            raise PermissionDenied
        form = ReconciliationRunForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            fix = form.cleaned_data["fix"]
            try:
                run = reconciliation_start(trigger="admin", fix=fix, actor=request.user)
            except ReconciliationBusy as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                mode = "fixing" if fix else "report-only"
                self.message_user(request, f"Reconciliation run {run.pk} ({mode}) was queued.")
            return HttpResponseRedirect(reverse("admin:ops_reconciliationrun_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Run reconciliation now",
            "opts": self.model._meta,
            "form": form,
        }
        return TemplateResponse(request, "admin/ops/reconciliationrun/run_now.html", context)
