"""Addresses of the staff console's pages."""

from __future__ import annotations

from django.urls import reverse


def changelist(model: str) -> str:
    """The admin changelist of ``app.model``."""
    return reverse(f"admin:{model.replace('.', '_')}_changelist")
