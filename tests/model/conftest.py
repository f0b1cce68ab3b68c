"""The model test runs in the lifecycle suite's world: fake Stripe and fake Discord over HTTP."""

from __future__ import annotations

from tests.lifecycle.conftest import world

__all__ = ["world"]
