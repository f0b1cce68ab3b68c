"""Settings for the real processes the slow tests start: the project's, plus test URLs.

Tables are created straight from the models (``migrate --run-syncdb``), as pytest-django's
``--nomigrations`` does, because dj-stripe's migrations take over a minute.
"""

from gateway.settings import *  # noqa: F403
from gateway.settings import INSTALLED_APPS

ROOT_URLCONF = "tests.gateway.urls"


class _NoMigrations(dict):
    def __contains__(self, app_label: object) -> bool:
        return True

    def __getitem__(self, app_label: str) -> None:
        return None


MIGRATION_MODULES = _NoMigrations() if INSTALLED_APPS else {}
