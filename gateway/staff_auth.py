"""Staff sign in to the admin only through the admin login, with a second factor.

The admin is Django's site with one change (``GatewayAdminSite.has_permission``): when
``ADMIN_REQUIRE_2FA`` is on (staging and production by default) a staff session opens the
admin only after a one-time code from django-otp verified it. Only the admin login does that,
so a session from anywhere else (the member pages refuse staff anyway) never reaches the admin.

- First admin login without a device: password only, then the enrolment page
  (``<ADMIN_URL>2fa/setup/``): an authenticator app's secret, a code to confirm it, and ten
  single-use recovery codes shown once (django-otp's static tokens).
- Later logins: email, password and a code from the app or a recovery code in one form.
- A lost device: ``manage.py staff_otp_reset EMAIL`` removes the devices; the next admin login
  enrols again.
"""

from __future__ import annotations

from base64 import b32encode
from typing import Any

import structlog
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_otp import devices_for_user, user_has_device, verify_token
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from ops.models import AuditAction, AuditActor
from ops.services import audit_actor, audit_record

log = structlog.get_logger(__name__)

RECOVERY_CODES = 10
TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"


def second_factor_required() -> bool:
    return settings.ADMIN_REQUIRE_2FA


def second_factor_ok(request: HttpRequest) -> bool:
    """The session may use the admin as far as the second factor goes."""
    return not second_factor_required() or request.user.is_verified()


class StaffLoginForm(AdminAuthenticationForm):
    """The admin login: email, password and (once enrolled) a code, all in one step, so the
    answer never tells whether the password alone was right."""

    otp_token = forms.CharField(
        label="Authentication code",
        required=False,
        max_length=16,
        help_text="From your authenticator app, or one of your recovery codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "otp_invalid": "The authentication code is not correct.",
    }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        user = self.get_user()
        if user is None or not second_factor_required() or not user_has_device(user):
            return data  # no device yet: the login leads to the enrolment page
        token = "".join((data.get("otp_token") or "").split())
        device = None
        if token:
            for candidate in devices_for_user(user, for_verify=True):
                device = verify_token(user, candidate.persistent_id, token)
                if device is not None:
                    break
        if device is None:
            log.info("admin_login_otp_refused")
            raise forms.ValidationError(self.error_messages["otp_invalid"], code="otp_invalid")
        # django-otp's user_logged_in receiver marks the session verified with this device.
        user.otp_device = device
        if isinstance(device, StaticDevice):
            audit_record(
                **audit_actor(user),
                action=AuditAction.STAFF_RECOVERY_CODE_USED,
                target=user,
                details={"left": device.token_set.count()},
            )
        return data


class GatewayAdminSite(admin.AdminSite):
    """Django's admin site, closed to staff sessions that no second factor verified."""

    login_form = StaffLoginForm
    login_template = "admin/staff_login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and second_factor_ok(request)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        extra = {**(extra_context or {}), "second_factor_required": second_factor_required()}
        return super().login(request, extra)


def login_redirect(request: HttpRequest) -> HttpResponse | None:
    """Where the admin login sends a signed-in staff user who still needs the second factor."""
    user = request.user
    if (
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and second_factor_required()
        and not request.user.is_verified()
        and not user_has_device(user)
    ):
        return redirect("admin_2fa_setup")
    return None


def _totp_device(user: Any) -> TOTPDevice:
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


@transaction.atomic
def staff_2fa_enrol(*, user: Any, device: TOTPDevice) -> list[str]:
    """Confirm the app and issue fresh recovery codes; returns them (shown once)."""
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    StaticDevice.objects.filter(user=user).delete()
    recovery = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=recovery, token=code) for code in codes)
    audit_record(
        **audit_actor(user),
        action=AuditAction.STAFF_2FA_ENROLLED,
        target=user,
    )
    return codes


@transaction.atomic
def staff_otp_reset(*, user: Any, actor_label: str) -> int:
    """Remove every second-factor device of ``user`` (a lost phone); the next admin login
    enrols again. Returns how many devices were removed."""
    removed = 0
    for model in (TOTPDevice, StaticDevice):
        removed += model.objects.filter(user=user).delete()[1].get(model._meta.label, 0)
    audit_record(
        actor_type=AuditActor.SYSTEM,
        actor_label=actor_label,
        action=AuditAction.STAFF_2FA_RESET,
        target=user,
        details={"devices_removed": removed},
    )
    return removed


class EnrolForm(forms.Form):
    otp_token = forms.CharField(
        label="Code from the app",
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


@never_cache
@login_required(login_url="admin:login")
@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    """``<ADMIN_URL>2fa/setup/``: enrol an authenticator app (staff without a device only)."""
    user = request.user
    if not user.is_staff or not user.is_active or user_has_device(user):
        # Enrolled staff replace a device only after a reset, never from a password session.
        return redirect("admin:login")
    device = _totp_device(user)
    form = EnrolForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid() and device.verify_token("".join(form.cleaned_data["otp_token"].split())):
            codes = staff_2fa_enrol(user=user, device=device)
            otp_login(request, device)
            log.info("staff_2fa_enrolled")
            return TemplateResponse(
                request,
                "admin/2fa_recovery_codes.html",
                {**admin.site.each_context(request), "title": "Recovery codes", "codes": codes},
            )
        form.add_error("otp_token", "That code is not correct. Check the app and try again.")
        status = 400
    context = {
        **admin.site.each_context(request),
        "title": "Set up two-factor authentication",
        "form": form,
        "secret": b32encode(device.bin_key).decode("ascii"),
        "config_url": device.config_url,
        "admin_index": reverse("admin:index"),
    }
    return TemplateResponse(request, "admin/2fa_setup.html", context, status=status)
