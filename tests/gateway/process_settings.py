"""Settings for the real processes the slow tests start: the project's, plus test URLs."""

from gateway.settings import *  # noqa: F403

ROOT_URLCONF = "tests.gateway.urls"
