"""Member pages: landing, sign-up, login (password and magic link), email and password.

The dashboard, billing and checkout pages are billing's (``billing/views.py``). Views parse
input and call services; refusals come back as ``MemberError`` and are shown as messages.
Pages use Django sessions with CSRF, and no inline script or style (the CSP forbids both).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

import structlog
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_ratelimit.decorators import ratelimit
from sesame.utils import get_user as sesame_get_user

from members.forms import (
    LoginForm,
    MagicLinkForm,
    NewPasswordForm,
    ResetForm,
    SignupForm,
)
from members.gates import member_login_allowed
from members.models import User, normalize_email
from members.services import (
    EMAIL_VERIFY_MAX_AGE,
    email_proven,
    email_verify_send,
    email_verify_user,
    magic_link_request,
    member_signup,
)
from ops.errors import ServiceError
from ops.http import client_ip, rate_limited

log = structlog.get_logger(__name__)

# Colours reach a stylesheet, so only plain CSS colour tokens are accepted.
SAFE_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,20})$")

View = Callable[..., HttpResponse]


def _email_key(group: str, request: HttpRequest) -> str:
    return normalize_email(request.POST.get("email", "")) or "-"


def _email_at_address_key(group: str, request: HttpRequest) -> str:
    return f"{_email_key(group, request)} {client_ip(request)}"


def rate_limit(setting: str, *, address_setting: str | None = None) -> Callable[[View], View]:
    """Limit POSTs per client IP and per submitted email to the rate in ``settings.<setting>``.

    With ``address_setting`` (the password login), the email is counted together with the
    client address at ``<setting>``, and the address alone at ``<address_setting>``: wrong
    passwords typed for someone's email from elsewhere never lock that member out, while one
    address spraying many emails is still stopped.

    The counters live in the shared cache; the IP is the real client address resolved by
    ``RealClientIPMiddleware`` behind the trusted proxies. Over a limit → the 429 page.
    """

    def rate(group: str, request: HttpRequest) -> str:
        return getattr(settings, setting)

    def address_rate(group: str, request: HttpRequest) -> str:
        return getattr(settings, address_setting or setting)

    email_key = _email_at_address_key if address_setting else _email_key

    def decorator(view: View) -> View:
        group = f"members.{view.__name__}"

        @ratelimit(group=f"{group}.ip", key="ip", rate=address_rate, method="POST", block=False)
        @ratelimit(group=f"{group}.email", key=email_key, rate=rate, method="POST", block=False)
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if getattr(request, "limited", False):
                log.warning("rate_limited", view=view.__name__)
                return rate_limited(request)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def safe_next(request: HttpRequest, default: str) -> str:
    """The ``next`` target when it stays on this site, otherwise ``default``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    # Only site paths: redirect() would try a bare word such as "dashboard" as a URL name
    # (and fail with a 500 on anything that is not one).
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


@require_GET
def theme_css(request: HttpRequest) -> HttpResponse:
    """Community colours as CSS custom properties (a stylesheet, because inline styles are off)."""

    def color(value: str, fallback: str) -> str:
        return value if SAFE_COLOR.match(value or "") else fallback

    primary = color(settings.COMMUNITY_PRIMARY_COLOR, "#7a1f2b")
    accent = color(settings.COMMUNITY_ACCENT_COLOR, "#c9a227")
    body = f":root{{--primary:{primary};--accent:{accent};}}\n"
    response = HttpResponse(body, content_type="text/css; charset=utf-8")
    response["Cache-Control"] = "public, max-age=3600"
    return response


@never_cache
@require_http_methods(["GET", "POST"])
@rate_limit("RATELIMIT_SIGNUP")
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("billing:dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = member_signup(
                email=form.cleaned_data["email"], password=form.cleaned_data["password"]
            )
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect(safe_next(request, reverse("billing:dashboard")))
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "members/signup.html", {"form": form}, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
@rate_limit("RATELIMIT_LOGIN", address_setting="RATELIMIT_LOGIN_ADDRESS")
def login_view(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None, request=request)
    if request.method == "POST" and form.is_valid():
        login(request, form.user)
        return redirect(safe_next(request, reverse("billing:dashboard")))
    status = 400 if form.is_bound and form.errors else 200
    return render(
        request,
        "members/login.html",
        {"form": form, "next": safe_next(request, "")},
        status=status,
    )


@never_cache
@require_http_methods(["GET", "POST"])
@rate_limit("RATELIMIT_MAGIC_LINK")
def magic_link(request: HttpRequest) -> HttpResponse:
    form = MagicLinkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        magic_link_request(email=form.cleaned_data["email"])
        # Same page whether or not the address is known.
        return render(request, "members/magic_link_sent.html")
    return render(request, "members/magic_link.html", {"form": form})


@never_cache
@require_http_methods(["GET", "POST"])
def magic_link_login(request: HttpRequest) -> HttpResponse:
    """Log in with an emailed link, on POST only.

    Mail scanners fetch links with GET; consuming the single-use token on GET would burn it
    before the member clicks, so GET only shows a button.
    """
    token = request.POST.get("token") if request.method == "POST" else request.GET.get("token")
    if request.method == "GET":
        return render(request, "members/magic_link_login.html", {"token": token or ""})
    user = sesame_get_user(token or "", update_last_login=False) if token else None
    if user is not None and not member_login_allowed(user):
        user = None
    # Claim the token: it is valid only while last_login is unchanged, and exactly one request
    # may move it (a conditional UPDATE, so two concurrent clicks cannot both log in).
    if user is None or not User.objects.filter(pk=user.pk, last_login=user.last_login).update(
        last_login=timezone.now()
    ):
        log.info("magic_link_refused")
        return render(request, "members/magic_link_invalid.html", status=400)
    _prove_email(request, user, via="magic_link")
    login(request, user, backend="sesame.backends.ModelBackend")
    return redirect("billing:dashboard")


def _prove_email(request: HttpRequest, user: User, *, via: str) -> bool:
    """Record the proof; a password chosen before it is dropped unless this very browser is
    already logged in to the account (then it knows the password and now the inbox)."""
    same_browser = request.user.is_authenticated and request.user.pk == user.pk
    had_password = user.has_usable_password()
    first = email_proven(user=user, via=via, keep_password=same_browser)
    if first and had_password and not same_browser:
        messages.info(
            request,
            "Your email is confirmed. For your safety, the password set on this account "
            "before the email was confirmed was removed; use “Forgot your password?” to "
            "choose a new one.",
        )
    elif first:
        messages.success(request, "Your email is confirmed.")
    return first


@never_cache
@require_http_methods(["GET", "POST"])
def email_verify(request: HttpRequest) -> HttpResponse:
    """Prove the email with the emailed confirmation link, on POST only (mail scanners GET);
    the browser that proves it is logged in, like with a magic link."""
    token = request.POST.get("token") if request.method == "POST" else request.GET.get("token")
    if request.method == "GET":
        return render(request, "members/email_verify.html", {"token": token or ""})
    user = email_verify_user(token or "")
    if user is not None and not member_login_allowed(user):
        user = None
    # email_proven() answers False when a concurrent click proved it first: one use only.
    if user is None or not _prove_email(request, user, via="confirmation_link"):
        log.info("email_verify_refused")
        hours = int(EMAIL_VERIFY_MAX_AGE.total_seconds() // 3600)
        return render(
            request, "members/email_verify_invalid.html", {"expires_hours": hours}, status=400
        )
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("billing:dashboard")


def _email_verify_rate(group: str, request: HttpRequest) -> str:
    return settings.RATELIMIT_EMAIL_VERIFY


@login_required
@require_POST
@ratelimit(group="members.email_verify_send", key="user", rate=_email_verify_rate, block=False)
def email_verify_resend(request: HttpRequest) -> HttpResponse:
    if getattr(request, "limited", False):
        log.warning("rate_limited", view="email_verify_resend")
        return rate_limited(request)
    if request.user.email_proven:
        messages.info(request, "Your email is already confirmed.")
    else:
        email_verify_send(user=request.user)
        messages.success(
            request,
            f"We sent a new confirmation link to {request.user.email}. Open it to continue.",
        )
    return redirect(safe_next(request, reverse("billing:dashboard")))


@method_decorator(rate_limit("RATELIMIT_PASSWORD_RESET"), name="dispatch")
class PasswordResetView(auth_views.PasswordResetView):
    form_class = ResetForm
    template_name = "members/password_reset.html"
    success_url = reverse_lazy("members:password_reset_done")


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    form_class = NewPasswordForm
    template_name = "members/password_reset_confirm.html"
    success_url = reverse_lazy("members:password_reset_complete")

    def form_valid(self, form: NewPasswordForm) -> HttpResponse:
        # The new password (which ends every other session) is chosen through the emailed
        # link, so it is the owner's: keep it and record the proof.
        response = super().form_valid(form)
        email_proven(user=form.user, via="password_reset", keep_password=True)
        return response
