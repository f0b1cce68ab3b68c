"""Give every team a Stripe customer of its own (teams bought before they had one)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from billing.checkout import team_customer_separate, teams_sharing_a_personal_customer


class Command(BaseCommand):
    help = (
        "Separate teams whose subscription lives on their purchaser's personal Stripe customer: "
        "the customer becomes the team's and the purchaser gets a fresh one at their next "
        "checkout. Customers that also hold other subscriptions are kept and listed. "
        "--dry-run lists what would change and changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="list, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        pairs = teams_sharing_a_personal_customer()
        if not pairs:
            self.stdout.write("every team has a Stripe customer of its own")
            return
        for team, purchaser in pairs:
            result = team_customer_separate(
                team=team, purchaser=purchaser, dry_run=options["dry_run"]
            )
            self.stdout.write(
                f"team {team.pk} ({team.name}) customer {result.customer_id} "
                f"of member {purchaser.pk}: {result.outcome}"
            )
