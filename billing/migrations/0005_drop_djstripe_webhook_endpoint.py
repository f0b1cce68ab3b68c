"""Remove the copy of STRIPE_WEBHOOK_SECRET kept in dj-stripe's WebhookEndpoint table.

Earlier versions mirrored the signing secret into this row so that dj-stripe's own
``/stripe/webhook/<uuid>/`` route could verify with it. That route is no longer mounted (it
stored events without running our handlers); the secret belongs in the environment only.
"""

from __future__ import annotations

from django.db import migrations

MIRRORED_ENDPOINT_ID = "we_membership_gateway"


def drop_mirrored_endpoint(apps, schema_editor) -> None:
    WebhookEndpoint = apps.get_model("djstripe", "WebhookEndpoint")
    WebhookEndpoint.objects.filter(id=MIRRORED_ENDPOINT_ID).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0004_inbox_fewer_indexes"),
        ("djstripe", "0003_2_11"),
    ]

    operations = [migrations.RunPython(drop_mirrored_endpoint, migrations.RunPython.noop)]
