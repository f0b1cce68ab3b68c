"""Billing and team pages: the landing page with the plans on sale, the member dashboard,
billing and the Stripe portal, checkout (individual and company), and the team owner's seat
pages.

They live with billing because what they show and change is billing's: entitlement, the
billing summary, Stripe Checkout and seat changes. Views parse input and call services;
refusals come back as ``CheckoutError``/``SeatError`` and are shown as messages.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.catalogue import plans_offered
from billing.checkout import (
    SEAT_ADD_MAX,
    billing_portal_start,
    checkout_company_start,
    checkout_individual_start,
    individual_replaceable_by_company,
    member_has_live_subscription,
    seats_add,
)
from billing.forms import CompanyPlanForm
from billing.models import Plan
from billing.plan_change import plan_choices, plan_switch
from billing.selectors import member_billing_summary
from billing.teams import (
    INVITE_TIERS,
    NotFound,
    invite_create,
    invite_link,
    invite_revoke,
    owned_team,
    seat_revoke,
    team_seats,
)
from members.gates import email_proven_required
from members.models import Member, SeatTier
from members.selectors import member_can_manage_billing, member_invoices
from members.services import member_for_user
from ops.errors import ServiceError

# --- Landing, member dashboard, billing and checkout ----------------------------------------


@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "members/landing.html",
        {
            "individual_offers": plans_offered(Plan.Kind.INDIVIDUAL),
            "company_offers": plans_offered(Plan.Kind.COMPANY),
        },
    )


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    member = member_for_user(user=request.user)
    checkout = request.GET.get("checkout")
    if checkout == "success":
        messages.success(request, "Thank you! Your payment is being confirmed.")
    elif checkout == "cancel":
        messages.info(request, "Checkout was cancelled; nothing was charged.")
    billing = member_billing_summary(member)
    offers = plans_offered()
    return render(
        request,
        "members/dashboard.html",
        {
            "member": member,
            "billing": billing,
            "can_manage_billing": member_can_manage_billing(member=member),
            "is_owner": member.team_id is not None and member.seat_tier == SeatTier.OWNER,
            "invite_url": settings.DISCORD_INVITE_URL,
            "now": timezone.now(),
            "individual_offers": [o for o in offers if o.plan.kind == Plan.Kind.INDIVIDUAL],
            "plan_choices": plan_choices(member, offers=offers, billed=billing.option),
        },
    )


@login_required
@require_POST
def plan_change(request: HttpRequest) -> HttpResponse:
    """Another option of the plan kind the member pays for (``price``: an option's key)."""
    member = member_for_user(user=request.user)
    try:
        option = plan_switch(member=member, key=request.POST.get("price", "")[:255])
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Your plan is now {option.plan.name}, {option.label}. Stripe has invoiced the "
            "difference for the rest of this period; your access continues as it is.",
        )
    return redirect("billing:dashboard")


@login_required
@require_GET
def billing(request: HttpRequest) -> HttpResponse:
    member = member_for_user(user=request.user)
    return render(
        request,
        "members/billing.html",
        {
            "member": member,
            "billing": member_billing_summary(member),
            "invoices": member_invoices(member=member),
            "can_manage_billing": member_can_manage_billing(member=member),
        },
    )


@login_required
@email_proven_required
@require_POST
def billing_portal(request: HttpRequest) -> HttpResponse:
    return _to_stripe(
        request,
        lambda member: billing_portal_start(
            member=member, return_url=f"{settings.APP_URL}{reverse('billing:billing')}"
        ),
        back="billing:billing",
    )


@login_required
@require_POST
def checkout_individual(request: HttpRequest) -> HttpResponse:
    """Checkout of the individual plan and interval chosen (``price``: an option's key)."""
    price_id = request.POST.get("price", "")[:255]
    return _to_stripe(
        request,
        lambda member: checkout_individual_start(member=member, price_id=price_id or None),
        back="billing:dashboard",
    )


def _to_stripe(request: HttpRequest, start: Callable[[Member], str], *, back: str) -> HttpResponse:
    """Send the member to the Stripe page ``start(member)`` opens, or back to the ``back`` page
    with the refusal."""
    member = member_for_user(user=request.user)
    try:
        url = start(member)
    except ServiceError as exc:
        messages.error(request, str(exc))
        return redirect(back)
    return redirect(url)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def company(request: HttpRequest) -> HttpResponse:
    member = member_for_user(user=request.user)
    form = CompanyPlanForm(
        request.POST or None,
        offers=plans_offered(Plan.Kind.COMPANY),
        initial={"price": request.GET.get("price", "")},
    )
    if request.GET.get("checkout") == "cancel":
        messages.info(request, "Checkout was cancelled; your details are kept for next time.")
    if request.method == "POST" and form.is_valid():
        try:
            url = checkout_company_start(
                member=member,
                company_name=form.cleaned_data["company_name"],
                owner_seats=form.cleaned_data["owner_seats"],
                team_seats=form.cleaned_data["team_seats"],
                price_id=form.cleaned_data["price"][:255] or None,
            )
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect(url)
    status = 400 if form.is_bound and form.errors else 200
    return render(
        request,
        "members/company.html",
        {
            "form": form,
            "already_member": member.team_id is not None and member_has_live_subscription(member),
            "moving": _moving_to_company(member),
        },
        status=status,
    )


def _moving_to_company(member: Member) -> bool:
    """The member's individual plan would move to the company plan bought here."""
    try:
        return bool(member.team_id is None and individual_replaceable_by_company(member))
    except ServiceError:
        return False


# --- Team seats ------------------------------------------------------------------------


def _owner(request: HttpRequest) -> Member:
    member = Member.objects.select_related("team", "user").filter(user=request.user).first()
    try:
        owned_team(member)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    assert member is not None
    return member


@login_required
@email_proven_required
@never_cache
@require_GET
def team(request: HttpRequest) -> HttpResponse:
    owner = _owner(request)
    team = owner.team
    members = sorted(
        team.members.select_related("user"),
        key=lambda m: (m.pk != team.primary_owner_id, m.seat_tier != SeatTier.OWNER, m.pk),
    )
    invites = [
        (invite, invite_link(invite))
        for invite in team.invites.filter(revoked_at__isnull=True).order_by("-created_at")
    ]
    return render(
        request,
        "team/dashboard.html",
        {
            "team": team,
            "owner": owner,
            "seats": team_seats(team),
            "members": members,
            "invites": invites,
            "tiers": [(tier, SeatTier(tier).label) for tier in INVITE_TIERS],
            "seat_add_max": SEAT_ADD_MAX,
        },
    )


def _team_change(request: HttpRequest, change: Callable[[Member], str]) -> HttpResponse:
    """Run one change of the owner's team: ``change(owner)`` returns the success message; a
    target outside the team is a 404, any other refusal a message; back to the team page."""
    owner = _owner(request)
    try:
        done = change(owner)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return redirect("billing:team")


@login_required
@email_proven_required
@require_POST
def team_invite_create(request: HttpRequest) -> HttpResponse:
    def create(owner: Member) -> str:
        invite = invite_create(
            actor=owner,
            tier=request.POST.get("tier", ""),
            email=request.POST.get("email", "")[:254],
        )
        return f"Invite created: {invite_link(invite)}"

    return _team_change(request, create)


@login_required
@email_proven_required
@require_POST
def team_seats_add(request: HttpRequest) -> HttpResponse:
    """Buy more seats now: Stripe invoices the prorated amount at once; the paid counts on
    this page follow when Stripe confirms the change."""
    try:
        quantity = int(request.POST.get("quantity", ""))
    except ValueError:
        quantity = 0

    def add(owner: Member) -> str:
        change = seats_add(
            team=owner.team, tier=request.POST.get("tier", ""), quantity=quantity, actor=owner
        )
        added = change.new_quantity - change.previous_quantity
        return (
            f"{added} seat{'s' if added != 1 else ''} added and invoiced (prorated). The seat "
            "counts update as soon as Stripe confirms the change."
        )

    return _team_change(request, add)


@login_required
@email_proven_required
@require_POST
def team_invite_revoke(request: HttpRequest, invite_id: int) -> HttpResponse:
    def revoke(owner: Member) -> str:
        invite_revoke(actor=owner, invite_id=invite_id, now=timezone.now())
        return "Invite revoked."

    return _team_change(request, revoke)


@login_required
@email_proven_required
@require_POST
def team_seat_revoke(request: HttpRequest, member_id: int) -> HttpResponse:
    def revoke(owner: Member) -> str:
        target = seat_revoke(actor=owner, member_id=member_id, now=timezone.now())
        return f"Seat revoked for {target}. The seat is free again."

    return _team_change(request, revoke)
