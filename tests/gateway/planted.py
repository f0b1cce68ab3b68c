"""Secrets and personal data planted in requests, exceptions and locals by the tests, which
then assert that none of them reaches a log line or a Sentry envelope."""

from __future__ import annotations

WEBHOOK_SECRET = "whsec_PlantedWebhookSigningSecret0123456789"
BOT_TOKEN = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWsPlanted"
MEMBER_EMAIL = "lapsed.member@example.org"
BEARER = "Bearer planted-bearer-credential-5f1e2d"
SESSION_COOKIE = "plantedsessioncookievalue0123456789"
MAGIC_TOKEN = "planted-magic-link-token-abcdef"

ALL = [
    WEBHOOK_SECRET,
    BOT_TOKEN,
    MEMBER_EMAIL,
    BEARER.split()[1],
    SESSION_COOKIE,
    MAGIC_TOKEN,
]
