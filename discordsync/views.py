"""Pages for linking Discord, logging in with Discord, team seats and invites.

Views stay thin: they parse input, call the OAuth helpers and the services, and turn the
services' domain errors into messages.
"""

from __future__ import annotations

import structlog
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django_ratelimit.decorators import ratelimit

from billing.checkout import member_has_live_subscription
from billing.entitlement import member_is_entitled
from billing.teams import (
    invite_for_token,
    seat_claim,
    team_seats,
)
from discordsync.oauth import Flow, oauth_consume, oauth_identify, oauth_start
from discordsync.services import discord_link, guild_join
from members.gates import email_proven_required, member_login_allowed
from members.models import Invite, Member
from ops.errors import ServiceError
from ops.http import rate_limited

log = structlog.get_logger(__name__)

DASHBOARD_URL = "/dashboard/"
INVITE_CLAIM_RATE = settings.RATELIMIT_INVITE_CLAIM


def _member(request: HttpRequest) -> Member | None:
    if not request.user.is_authenticated:
        return None
    return Member.objects.select_related("team", "user").filter(user=request.user).first()


OWN_MEMBERSHIP = (
    "You already have your own membership. Cancel it before taking a team seat, or contact support."
)


def _holds_membership(request: HttpRequest) -> bool:
    """The logged-in person already has a membership that grants or owes access: a seat
    claimed now, with a Discord account not linked to it, would be a second membership."""
    member = _member(request)
    return member is not None and (
        member_has_live_subscription(member) or member_is_entitled(member, timezone.now())
    )


def _oauth_error(request: HttpRequest, message: str, *, status: int = 400) -> HttpResponse:
    return render(request, "discordsync/oauth_error.html", {"message": message}, status=status)


# --- Linking (claim) -------------------------------------------------------------------


@login_required
@email_proven_required
@never_cache
@require_http_methods(["GET", "POST"])
def claim(request: HttpRequest) -> HttpResponse:
    member = _member(request)
    if member is None:
        raise Http404("No membership for this account")
    entitled = member_is_entitled(member, timezone.now())
    if request.method == "POST":
        # A linked member who is not in the guild comes back the same way: Discord confirms
        # the account and the callback adds them again (``guilds.join``).
        if member.discord_id and member.in_guild:
            messages.info(request, "Your Discord account is already linked.")
            return redirect("discordsync:claim_start")
        if not entitled:
            messages.error(request, "An active membership is needed before you can link Discord.")
            return redirect("discordsync:claim_start")
        return redirect(oauth_start(request, flow=Flow.LINK, member_id=member.pk))
    return render(
        request,
        "discordsync/claim.html",
        {"member": member, "entitled": entitled, "invite_url": settings.DISCORD_INVITE_URL},
    )


@never_cache
@require_GET
def login_discord(request: HttpRequest) -> HttpResponse:
    """Start "Log in with Discord" — the only web login a team-seat member may have."""
    return redirect(oauth_start(request, flow=Flow.LOGIN))


@never_cache
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """The one OAuth redirect URI; the flow comes from the session, never from the URL."""
    try:
        pending = oauth_consume(request, state=request.GET.get("state", ""))
    except ServiceError as exc:
        log.info("oauth_callback_rejected", reason="state")
        return _oauth_error(request, str(exc))
    if request.GET.get("error"):
        return _oauth_error(request, "Discord sign-in was cancelled. Nothing was changed.")
    code = request.GET.get("code", "")
    if not code:
        return _oauth_error(request, "Discord did not send a sign-in code. Please start again.")

    if pending.flow == Flow.LINK:
        member = _member(request)
        # The pending link is bound to the member who started it in this session.
        if member is None or member.pk != pending.member_id:
            return _oauth_error(request, "This sign-in does not belong to your session.")
        if not member.user.email_proven:
            return _oauth_error(request, "Confirm your email before linking Discord.")
        try:
            discord_user, access_token = oauth_identify(code)
            member = discord_link(
                member_id=member.pk, discord_user=discord_user, now=timezone.now()
            )
        except ServiceError as exc:
            return _oauth_error(request, str(exc))
        _after_link(request, member.pk, access_token)
        return redirect(DASHBOARD_URL)

    if pending.flow == Flow.LOGIN:
        try:
            discord_user, _ = oauth_identify(code)
        except ServiceError as exc:
            return _oauth_error(request, str(exc))
        member = (
            Member.objects.select_related("user")
            .filter(discord_id=discord_user.id, user__is_active=True)
            .first()
        )
        if member is None or not member_login_allowed(member.user):
            return _oauth_error(
                request,
                "We could not log you in with that Discord account. Log in with your email, "
                "then link Discord from your dashboard.",
            )
        login(request, member.user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(DASHBOARD_URL)

    # Flow.INVITE
    if _holds_membership(request):
        return _oauth_error(request, OWN_MEMBERSHIP)
    try:
        discord_user, access_token = oauth_identify(code)
        member = seat_claim(
            invite_id=pending.invite_id or 0, discord_user=discord_user, now=timezone.now()
        )
    except ServiceError as exc:
        return _oauth_error(request, str(exc))
    if member_login_allowed(member.user):
        login(request, member.user, backend="django.contrib.auth.backends.ModelBackend")
    _after_link(request, member.pk, access_token)
    return redirect(DASHBOARD_URL)


def _after_link(request: HttpRequest, member_id: int, access_token: str) -> None:
    if guild_join(member_id=member_id, access_token=access_token):
        messages.success(request, "Discord linked — you are in the server.")
    else:
        messages.warning(
            request,
            f"Discord linked. Join the server with this invite: {settings.DISCORD_INVITE_URL}",
        )


# --- Invites ---------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
@ratelimit(key="ip", rate=INVITE_CLAIM_RATE, method="POST", block=False)
def invite(request: HttpRequest, token: str) -> HttpResponse:
    if getattr(request, "limited", False):
        # The same 429 page as every other limit (block=True would answer a bare 403).
        log.warning("rate_limited", view="invite")
        return rate_limited(request)
    found: Invite | None = invite_for_token(token)
    if found is None:
        return render(request, "team/invite_invalid.html", status=404)
    seats = next(s for s in team_seats(found.team) if s.tier == found.tier)
    if request.method == "POST":
        if seats.available <= 0:
            messages.error(request, "All seats of this kind are taken.")
            return redirect("discordsync:invite", token=token)
        if _holds_membership(request):
            messages.error(request, OWN_MEMBERSHIP)
            return redirect("discordsync:invite", token=token)
        return redirect(oauth_start(request, flow=Flow.INVITE, invite_id=found.pk))
    return render(request, "team/invite.html", {"invite": found, "seats": seats})
