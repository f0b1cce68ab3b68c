"""Settings for the real processes the slow tests start: the benchmarks' (the project's
settings, tables created straight from the models), plus test URLs."""

from bench.settings import *  # noqa: F403

ROOT_URLCONF = "tests.gateway.urls"
