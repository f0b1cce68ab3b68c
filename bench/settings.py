"""Settings for the processes a benchmark starts: the project's, plus the bench URLs.

Tables come straight from the models (``migrate --run-syncdb``, ``bench/processes.py``) because
dj-stripe's migrations take over a minute and are not what is measured. The processes the slow
tests start use the same settings with test URLs (``tests/gateway/process_settings.py``).
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
