from __future__ import annotations

from django.apps import AppConfig


class DiscordSyncConfig(AppConfig):
    name = "discordsync"
    verbose_name = "Discord"

    def ready(self) -> None:
        # Imported once apps are loaded: the module imports models (Django app loading); it
        # registers the outbox's Discord DM and admin-channel senders.
        from discordsync import outbox  # noqa: F401
