"""Settings for ``bench/webhook_ack.py``'s gunicorn: the project's, plus the bench URLs.

Tables come straight from the models (``migrate --run-syncdb``) because dj-stripe's migrations
take over a minute and are not what is measured.
"""

from gateway.settings import *  # noqa: F403
from gateway.settings import INSTALLED_APPS

ROOT_URLCONF = "bench.urls"


class _NoMigrations(dict):
    def __contains__(self, app_label: object) -> bool:
        return True

    def __getitem__(self, app_label: str) -> None:
        return None


MIGRATION_MODULES = _NoMigrations() if INSTALLED_APPS else {}
