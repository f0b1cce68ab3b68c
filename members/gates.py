"""Access gates shared by the member pages (members, discordsync)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

View = Callable[..., HttpResponse]


def email_proven_required(view: View) -> View:
    """Linking Discord, managing a team and the billing portal wait for a proven email.

    Until its owner proves the email, an account may belong to someone who signed up with
    another person's address; these actions would let them keep a foothold in the owner's
    membership. The page says so and offers a new confirmation link. Apply after
    ``login_required``.
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated and not request.user.email_proven:
            return render(request, "members/email_unconfirmed.html", status=403)
        return view(request, *args, **kwargs)

    return wrapped


def member_login_allowed(user: Any) -> bool:
    """Member login paths (password, magic link, email confirmation, Discord) never sign in
    a staff account: staff sign in through the admin login, with its stricter rate limit and
    the second factor, so a staff member's inbox or Discord account alone opens nothing.
    Callers answer exactly as for an unknown account, so the refusal does not reveal who is
    staff."""
    return not user.is_staff
