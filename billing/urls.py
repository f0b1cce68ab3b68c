from __future__ import annotations

from django.urls import path

from billing import views
from billing.webhooks import stripe_webhook

app_name = "billing"

urlpatterns = [
    path("stripe/webhook/", stripe_webhook, name="stripe_webhook"),
    path("", views.landing, name="landing"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("billing/", views.billing, name="billing"),
    path("billing/portal/", views.billing_portal, name="billing_portal"),
    path("checkout/individual/", views.checkout_individual, name="checkout_individual"),
    path("plan/change/", views.plan_change, name="plan_change"),
    path("company/", views.company, name="company"),
    path("team/", views.team, name="team"),
    path("team/seats/", views.team_seats_add, name="team_seats_add"),
    path("team/invites/", views.team_invite_create, name="team_invite_create"),
    path(
        "team/invites/<int:invite_id>/revoke/",
        views.team_invite_revoke,
        name="team_invite_revoke",
    ),
    path("team/members/<int:member_id>/revoke/", views.team_seat_revoke, name="team_seat_revoke"),
]
