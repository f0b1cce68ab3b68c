"""Remove a staff user's second-factor devices (a lost phone and lost recovery codes)."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from gateway.staff_auth import staff_otp_reset
from members.models import User, normalize_email


class Command(BaseCommand):
    help = (
        "Remove the authenticator app and recovery codes of a staff user; their next admin "
        "login sets up a new app. Check who is asking before you run it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("email", help="the staff user's email")

    def handle(self, *args, **options) -> None:
        user = User.objects.filter(email=normalize_email(options["email"])).first()
        if user is None or not user.is_staff:
            raise CommandError("No staff user has that email.")
        removed = staff_otp_reset(user=user, actor_label=f"manage.py ({getpass.getuser()})")
        self.stdout.write(
            f"Removed {removed} device(s) of {user.email}; the next admin login enrols again."
        )
