from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from members import views

app_name = "members"

urlpatterns = [
    path("theme.css", views.theme_css, name="theme_css"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.login_view, name="login"),
    path("login/link/", views.magic_link, name="magic_link"),
    path("login/link/verify/", views.magic_link_login, name="magic_link_login"),
    path("email/verify/", views.email_verify, name="email_verify"),
    path("email/verify/send/", views.email_verify_resend, name="email_verify_send"),
    path(
        "logout/",
        auth_views.LogoutView.as_view(next_page=reverse_lazy("billing:landing")),
        name="logout",
    ),
    path("password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="members/password_reset_done.html"),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="members/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
]
