"""Basic admin registration; the staff console (actions, filters, audit views) comes later."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from members.models import Invite, Member, Team, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "is_staff", "is_active", "date_joined", "last_login"]
    search_fields = ["email"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    readonly_fields = ["last_login", "date_joined"]


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["__str__", "seat_tier", "team", "discord_username", "paid_at", "cancelled_at"]
    list_filter = ["seat_tier"]
    search_fields = ["user__email", "discord_username", "discord_id", "stripe_customer_id"]
    raw_id_fields = ["user", "team"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "primary_owner", "owner_seats", "team_seats", "subscription_id"]
    search_fields = ["name", "subscription_id", "stripe_customer_id"]
    raw_id_fields = ["primary_owner"]


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ["team", "tier", "email", "created_at", "revoked_at", "last_claimed_at"]
    list_filter = ["tier"]
    raw_id_fields = ["team", "created_by", "last_claimed_by"]
    exclude = ["token"]  # a bearer secret: never shown in the admin
