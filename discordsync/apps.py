from django.apps import AppConfig


class DiscordSyncConfig(AppConfig):
    name = "discordsync"
    verbose_name = "Discord"
