"""Gunicorn settings for the web process (``gunicorn gateway.wsgi``).

Everything comes from the same environment as Django's settings. Shutdown: on SIGTERM the
master stops accepting connections and gives workers ``graceful_timeout`` to finish their
requests; the service manager's stop timeout (systemd ``TimeoutStopSec=35``) must exceed it.
"""

from __future__ import annotations

import multiprocessing
import os

from gateway.env import Settings
from gateway.logging import build_logging

env = Settings()

# Loopback unless told otherwise: the proxy in front is the only client gunicorn should see.
bind = f"{env.str('HOST', '127.0.0.1')}:{env.int('PORT', 8000)}"
# Gunicorn's own guidance: (2 x cores) + 1 sync workers; WEB_CONCURRENCY overrides.
workers = env.int("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count() + 1)
worker_class = "sync"
timeout = 30
graceful_timeout = 25
keepalive = 5
# Limit the damage of a slow leak: recycle workers, staggered so they do not restart together.
max_requests = env.int("GUNICORN_MAX_REQUESTS", 10000)
max_requests_jitter = 1000
# The heartbeat file lives in memory: a slow disk must not make the arbiter kill workers.
# gunicorn creates its own unlinked, private files there.
SHM = "/dev/shm"  # noqa: S108
if os.path.isdir(SHM):
    worker_tmp_dir = SHM

# Only our own proxies may tell gunicorn the scheme and client address; Django reads the same
# variable (gateway/middleware.py), so both trust the same peers.
if env.int("TRUSTED_PROXY_COUNT", 0) > 0:
    forwarded_allow_ips = ",".join(env.list("FORWARDED_ALLOW_IPS", ["127.0.0.1", "::1"]))
else:
    forwarded_allow_ips = ""

# Access and error lines go through the application's structlog formatter.
_deployed = env.str("DJANGO_ENV", "development") in ("staging", "production")
logconfig_dict = build_logging(
    env.str("LOG_FORMAT", "json" if _deployed else "console"), env.str("LOG_LEVEL", "INFO")
)
# Django's request context is gone when gunicorn writes the access line, so the request id
# is taken from the response header the middleware set.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s" request_id=%({x-request-id}o)s'
# Not preloaded: each worker imports Django after the fork, so database connections and
# Sentry's transport thread (started in GatewayConfig.ready) belong to that worker.
preload_app = False
