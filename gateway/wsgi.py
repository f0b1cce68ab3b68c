"""WSGI entry point for gunicorn (``gunicorn gateway.wsgi``)."""

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

application = get_wsgi_application()

# gunicorn runs no system checks; the one a first deploy trips over stops the worker's boot
# with its message instead of answering 500 on every page.
from gateway.checks import check_cache_table  # noqa: E402 - needs the app registry

if problems := check_cache_table():
    raise ImproperlyConfigured("; ".join(f"{p.msg} {p.hint}" for p in problems))
