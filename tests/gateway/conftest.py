"""Fixtures for the gateway tests: a local Sentry ingest server, and Sentry started on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk

from tests.observability import SentryIngest


@pytest.fixture
def sentry_ingest() -> Iterator[SentryIngest]:
    ingest = SentryIngest()
    yield ingest
    ingest.close()


@pytest.fixture
def sentry_on(sentry_ingest: SentryIngest, settings: Any) -> Iterator[SentryIngest]:
    """Sentry started in this process for the "web" role, sending to the local ingest."""
    import django_q.worker

    from gateway import sentry

    reporter = django_q.worker.error_reporter
    settings.SENTRY_DSN = sentry_ingest.dsn
    sentry._process = None
    assert sentry.init_sentry("web")
    yield sentry_ingest
    sentry_sdk.flush(timeout=5)
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    sentry._process = None
    django_q.worker.error_reporter = reporter
