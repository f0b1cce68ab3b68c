# Existing accounts start unproven on purpose: neither a payment nor a linked Discord ever
# proved that the account's email belongs to whoever set its password, so every account
# proves its email once (a magic-link login does it without asking).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0002_detach_members_of_ended_teams"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_verified_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
