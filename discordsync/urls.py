from __future__ import annotations

from django.urls import path

from discordsync import views

app_name = "discordsync"

urlpatterns = [
    path("claim/", views.claim, name="claim_start"),
    path("login/discord/", views.login_discord, name="login_discord"),
    path("oauth/discord/callback/", views.oauth_callback, name="oauth_callback"),
    path("invite/<str:token>/", views.invite, name="invite"),
]
