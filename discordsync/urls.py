from __future__ import annotations

from django.urls import path

from discordsync import views

app_name = "discordsync"

urlpatterns = [
    path("claim/", views.claim, name="claim_start"),
    path("login/discord/", views.login_discord, name="login_discord"),
    path("oauth/discord/callback/", views.oauth_callback, name="oauth_callback"),
    path("team/", views.team, name="team"),
    path("team/seats/", views.team_seats_add, name="team_seats_add"),
    path("team/invites/", views.team_invite_create, name="team_invite_create"),
    path(
        "team/invites/<int:invite_id>/revoke/",
        views.team_invite_revoke,
        name="team_invite_revoke",
    ),
    path("team/members/<int:member_id>/revoke/", views.team_seat_revoke, name="team_seat_revoke"),
    path("invite/<str:token>/", views.invite, name="invite"),
]
