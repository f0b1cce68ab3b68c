"""The staff console for teams, invites and staff accounts.

The member pages (billing state, expected role, the audited staff actions) show every floor at
once and live on the top floor (``gateway/member_admin.py``), as does the team list's CSV
export, which reads billing (``gateway/admin.py`` registers the team pages with it). Secrets
never render: no password hash, no full invite token; no query-string filter reaches them
either (every admin derives from ``ops.admin_guard``'s base).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from members.models import Invite, Member, Team, User
from members.selectors import with_seats_claimed
from ops.admin_guard import GuardedAdminMixin, GuardedModelAdmin, mask_secret

# --- Staff accounts -------------------------------------------------------------------------


class StaffUserChangeForm(forms.ModelForm):
    """Django's form shows the hash's algorithm and salt prefix; this one has no password."""

    class Meta:
        model = User
        fields = ["email", "is_active", "is_staff", "is_superuser", "groups"]


@admin.register(User)
class UserAdmin(GuardedAdminMixin, DjangoUserAdmin):
    form = StaffUserChangeForm
    add_form = AdminUserCreationForm
    ordering = ["email"]
    list_display = ["email", "is_staff", "is_superuser", "is_active", "date_joined", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active", "groups"]
    search_fields = ["email"]
    fieldsets = (
        (None, {"fields": ("email", "password_status")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    readonly_fields = ["password_status", "last_login", "date_joined"]
    filter_horizontal = ["groups"]

    @admin.display(description="Password")
    def password_status(self, obj: User) -> str:
        # Whether one is set, and where to set a new one; never the hash or any part of it.
        if obj.pk is None:
            return "—"
        state = "set" if obj.has_usable_password() else "not set (magic link / Discord only)"
        url = reverse("admin:auth_user_password_change", args=[obj.pk])
        return format_html('{} — <a href="{}">set a new password</a>', state, url)


# --- Teams and invites ----------------------------------------------------------------------


class InviteInline(admin.TabularInline):
    model = Invite
    fk_name = "team"
    extra = 0
    can_delete = False
    fields = ["tier", "email", "token_hint", "created_at", "revoked_at", "last_claimed_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # invites carry a fresh token; owners create them on the team page

    @admin.display(description="Token")
    def token_hint(self, obj: Invite) -> str:
        return mask_secret(obj.token)


class SeatInline(admin.TabularInline):
    model = Member
    fk_name = "team"
    extra = 0
    can_delete = False
    verbose_name = "seat"
    verbose_name_plural = "seats"
    fields = ["seat_holder", "seat_tier", "discord_username", "introduced_at", "override"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Member")
    def seat_holder(self, obj: Member) -> str:
        url = reverse("admin:members_member_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj)


@admin.register(Team)
class TeamAdmin(GuardedModelAdmin):
    list_display = ["name", "primary_owner", "owner_seats_used", "team_seats_used", "cancelled_at"]
    search_fields = ["name", "subscription_id", "members__user__email"]
    fields = [
        "name",
        "primary_owner",
        "subscription_id",
        "stripe_customer_id",
        "owner_seats_used",
        "team_seats_used",
        "created_at",
        "cancelled_at",
    ]
    readonly_fields = fields
    inlines = [SeatInline, InviteInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return with_seats_claimed(
            super().get_queryset(request).select_related("primary_owner__user")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # teams come from company Checkout

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        # Seat counts mirror Stripe and seats change through the owner's flows, not here.
        extra = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="Owner seats used / paid")
    def owner_seats_used(self, obj: Team) -> str:
        return f"{obj.owners_used} / {obj.owner_seats}"

    @admin.display(description="Team seats used / paid")
    def team_seats_used(self, obj: Team) -> str:
        return f"{obj.team_used} / {obj.team_seats}"


@admin.register(Invite)
class InviteAdmin(GuardedModelAdmin):
    list_display = ["team", "tier", "email", "token_hint", "created_at", "revoked_at"]
    list_filter = ["tier"]
    search_fields = ["team__name", "email"]
    fields = [
        "team",
        "tier",
        "email",
        "token_hint",
        "created_by",
        "created_at",
        "revoked_at",
        "last_claimed_at",
        "last_claimed_by",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Token")
    def token_hint(self, obj: Invite) -> str:
        return mask_secret(obj.token)
