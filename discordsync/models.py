from __future__ import annotations

from django.db import models


class ChannelCursor(models.Model):
    """The newest message of a channel the bot has handled: where its catch-up starts.

    Stored as a number so "only ever forward" is one conditional UPDATE (snowflakes grow with
    time and fit a signed 64-bit integer).
    """

    channel_id = models.CharField(max_length=32, unique=True)
    last_message_id = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"#{self.channel_id} up to {self.last_message_id}"
