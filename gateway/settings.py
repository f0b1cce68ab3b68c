"""Settings for every environment, read from the process environment.

``DJANGO_ENV`` selects the profile: development and test need no servers and no secrets;
staging and production require real secrets and pass ``manage.py check --deploy``. With no
Stripe or Discord credentials outside production the gateway runs in *sandbox mode* against
the fake Stripe and fake Discord servers in ``fakes/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from gateway.env import Settings, is_loopback_url, parse_networks
from gateway.logging import build_logging

BASE_DIR = Path(__file__).resolve().parent.parent
env = Settings()

# Under pytest the default profile is "test" (no servers, tasks run inline).
DJANGO_ENV = env.choice(
    "DJANGO_ENV",
    ("development", "test", "staging", "production"),
    "test" if "pytest" in sys.modules else "development",
)
DEPLOYED = DJANGO_ENV in ("staging", "production")
DEBUG = env.bool("DEBUG", DJANGO_ENV == "development")
if DEPLOYED and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when DJANGO_ENV is staging or production")

SECRET_KEY = env.secret(
    "SECRET_KEY", required=DEPLOYED, default="insecure-development-key-change-me-0123456789abcdef"
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", [] if DEPLOYED else ["localhost", "127.0.0.1", "[::1]"])
if DEPLOYED and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required in this environment")
PORT = env.int("PORT", 8000)
APP_URL = env.str("APP_URL", "" if DEPLOYED else f"http://127.0.0.1:{PORT}").rstrip("/")
if not APP_URL:
    raise ImproperlyConfigured("APP_URL is required in this environment")
CSRF_TRUSTED_ORIGINS = [APP_URL]

INSTALLED_APPS = [
    "gateway.apps.GatewayAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_structlog",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_q",
    "djstripe",
    "gateway",
    "members",
    "billing",
    "discordsync",
    "ops",
]

MIDDLEWARE = [
    "gateway.middleware.RealClientIPMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    "gateway.middleware.RequestIDHeaderMiddleware",
]

ROOT_URLCONF = "gateway.urls"
WSGI_APPLICATION = "gateway.wsgi.application"
AUTH_USER_MODEL = "members.User"
LOGIN_URL = "members:login"
LOGIN_REDIRECT_URL = "billing:dashboard"
LOGOUT_REDIRECT_URL = "billing:landing"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "gateway.context_processors.community",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", 600)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
if DJANGO_ENV == "test" and env.raw("DATABASE_URL"):
    # Test databases on a shared server get a unique name per run (see .ci/run).
    DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", "") or None}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Redis ------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
elif DJANGO_ENV == "test":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    # Shared by every process on the host without another server (rate limits need that).
    CACHES = {
        "default": {
            # Django's, with an atomic, expiry-preserving incr (gateway/cache.py).
            "BACKEND": "ops.cache.DatabaseCache",
            "LOCATION": "gateway_cache",
        }
    }

# --- Passwords and sessions -----------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if DJANGO_ENV == "test":
    # Tests create many users; argon2 stays the production hasher.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 8},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "sesame.backends.ModelBackend",
]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

# Magic links: single use, 15 minutes (django-sesame).
SESAME_MAX_AGE = 15 * 60
SESAME_ONE_TIME = True
SESAME_TOKEN_NAME = "token"

# --- Security (HTTPS everywhere it is deployed) ---------------------------------------
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", 0)
# Forwarded headers (X-Forwarded-For, X-Forwarded-Proto, X-Request-ID) are honoured only on
# connections from these addresses or networks: our own proxies. gunicorn reads the same
# variable (gunicorn.conf.py), so the scheme and the client address agree.
FORWARDED_ALLOW_IPS = parse_networks(
    "FORWARDED_ALLOW_IPS", env.list("FORWARDED_ALLOW_IPS", ["127.0.0.1", "::1"])
)
if TRUSTED_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = False
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", DEPLOYED)
SECURE_REDIRECT_EXEMPT = [r"^health/"]
SESSION_COOKIE_SECURE = DEPLOYED
CSRF_COOKIE_SECURE = DEPLOYED
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 31536000 if DEPLOYED else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = DEPLOYED
SECURE_HSTS_PRELOAD = DEPLOYED
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
ADMIN_URL = env.str("ADMIN_URL", "admin/").strip("/") + "/"
# Staff open the admin only after a one-time code (django-otp TOTP, recovery codes); the first
# admin login enrols an authenticator app. Off where `make run` must print a working login.
ADMIN_REQUIRE_2FA = env.bool("ADMIN_REQUIRE_2FA", DEPLOYED)
if DEPLOYED and not ADMIN_REQUIRE_2FA:
    raise ImproperlyConfigured(
        "ADMIN_REQUIRE_2FA must be on when DJANGO_ENV is staging or production"
    )

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "https://cdn.discordapp.com"],
        # Completed below from the Stripe and Discord settings (the hosts our POSTs redirect to).
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

RATELIMIT_VIEW = "ops.http.rate_limited"
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", True)
RATELIMIT_IP_META_KEY = "ops.http.client_ip"
# Member auth limits, applied per client IP and per submitted email (django-ratelimit rates).
# The password login counts an email together with the client address (RATELIMIT_LOGIN), so
# nobody can lock a member out from elsewhere, and each address across all emails
# (RATELIMIT_LOGIN_ADDRESS) against spraying.
RATELIMIT_LOGIN = env.str("RATELIMIT_LOGIN", "10/5m")
RATELIMIT_LOGIN_ADDRESS = env.str("RATELIMIT_LOGIN_ADDRESS", "30/5m")
RATELIMIT_SIGNUP = env.str("RATELIMIT_SIGNUP", "5/h")
RATELIMIT_MAGIC_LINK = env.str("RATELIMIT_MAGIC_LINK", "5/15m")
RATELIMIT_PASSWORD_RESET = env.str("RATELIMIT_PASSWORD_RESET", "5/15m")
# New email-confirmation links a logged-in member may ask for (the resend button).
RATELIMIT_EMAIL_VERIFY = env.str("RATELIMIT_EMAIL_VERIFY", "3/h")
RATELIMIT_INVITE_CLAIM = env.str("RATELIMIT_INVITE_CLAIM", "20/10m")
RATELIMIT_ADMIN_LOGIN = env.str("RATELIMIT_ADMIN_LOGIN", "5/15m")
# Seat invites a team's owners may send by email in any 24 hours (to any address, so a cap
# keeps the gateway from being a spam relay); link-only invites are not counted.
TEAM_INVITE_EMAILS_PER_DAY = env.int("TEAM_INVITE_EMAILS_PER_DAY", 25)

# --- Static files ---------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if DEPLOYED
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Community (nothing community-specific is hard-coded) -----------------------------
COMMUNITY_NAME = env.str("COMMUNITY_NAME", "The Revenue Council")
OTP_TOTP_ISSUER = COMMUNITY_NAME  # the name authenticator apps show for the staff login
COMMUNITY_PRIMARY_COLOR = env.str("COMMUNITY_PRIMARY_COLOR", "#7a1f2b")
COMMUNITY_ACCENT_COLOR = env.str("COMMUNITY_ACCENT_COLOR", "#c9a227")
ROLE_NAMES = {
    "squire": env.str("ROLE_NAME_SQUIRE", "Squire"),
    "knight": env.str("ROLE_NAME_KNIGHT", "Knight"),
    "lord": env.str("ROLE_NAME_LORD", "Lord"),
    "debtor": env.str("ROLE_NAME_DEBTOR", "Debtor"),
}
INDIVIDUAL_ROLE = env.choice("INDIVIDUAL_ROLE", ("lord", "knight"), "lord")
INTRODUCTION_MIN_LENGTH = env.int("INTRODUCTION_MIN_LENGTH", 100)

# --- Stripe (dj-stripe) ---------------------------------------------------------------
SANDBOX_STRIPE_PORT = env.int("SANDBOX_STRIPE_PORT", 12111)
SANDBOX_DISCORD_PORT = env.int("SANDBOX_DISCORD_PORT", 12112)
# Staging and production never run the sandbox: they need real Stripe and Discord credentials.
STRIPE_SECRET_KEY = env.secret("STRIPE_SECRET_KEY", required=DEPLOYED)
SANDBOX = not STRIPE_SECRET_KEY
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", False)
if SANDBOX:
    # dj-stripe only accepts keys shaped like real ones (24+ characters after the prefix).
    STRIPE_SECRET_KEY = "sk_test_sandbox0000000000000000000000"
    STRIPE_API_BASE = env.str("STRIPE_API_BASE", f"http://127.0.0.1:{SANDBOX_STRIPE_PORT}")
else:
    STRIPE_API_BASE = env.str("STRIPE_API_BASE", "https://api.stripe.com")
if STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_")) != STRIPE_LIVE_MODE:
    raise ImproperlyConfigured(
        "STRIPE_LIVE_MODE does not match STRIPE_SECRET_KEY (a live key needs "
        "STRIPE_LIVE_MODE=true, a test key STRIPE_LIVE_MODE=false)"
    )
if DJANGO_ENV == "staging" and STRIPE_LIVE_MODE:
    # Staging behaves like production but must never charge anyone.
    raise ImproperlyConfigured("DJANGO_ENV=staging uses Stripe test mode: set a test key")
# The sandbox secret is public (it is in this repository): a gateway that talks to any Stripe
# but the sandbox's must verify with a secret of its own, or anyone could forge webhooks.
SANDBOX_WEBHOOK_SECRET = "whsec_sandbox"
STRIPE_WEBHOOK_SECRET = env.secret(
    "STRIPE_WEBHOOK_SECRET", required=not SANDBOX, default=SANDBOX_WEBHOOK_SECRET
)
if not SANDBOX and STRIPE_WEBHOOK_SECRET == SANDBOX_WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "STRIPE_WEBHOOK_SECRET is the public sandbox secret: use the endpoint's own signing secret"
    )
STRIPE_INDIVIDUAL_PRICE_ID = env.str("STRIPE_INDIVIDUAL_PRICE_ID", "price_individual")
STRIPE_OWNER_SEAT_PRICE_ID = env.str("STRIPE_OWNER_SEAT_PRICE_ID", "price_owner_seat")
STRIPE_TEAM_SEAT_PRICE_ID = env.str("STRIPE_TEAM_SEAT_PRICE_ID", "price_team_seat")
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", 5.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", 2)
# Stripe allows 25 read requests per second in test mode and 100 in live mode per account; the
# event drain paces its reads to this, shared out among the worker processes (Q_WORKERS).
STRIPE_API_RATE_PER_SECOND = env.float(
    "STRIPE_API_RATE_PER_SECOND", 100.0 if STRIPE_LIVE_MODE else 25.0
)
# Stripe reads one drain keeps in flight at once (threads, bounded).
STRIPE_READ_CONCURRENCY = env.int("STRIPE_READ_CONCURRENCY", 8)
# Stripe Tax on Checkout (automatic tax, billing address, a company's tax id); the Stripe
# account must have Stripe Tax set up first (docs/CONFIGURATION.md "Stripe Tax").
STRIPE_TAX_ENABLED = env.bool("STRIPE_TAX_ENABLED", False)
if STRIPE_LIVE_MODE:
    STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY
else:
    STRIPE_TEST_SECRET_KEY = STRIPE_SECRET_KEY
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_USE_NATIVE_JSONFIELD = True
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"

# --- Discord --------------------------------------------------------------------------
DISCORD_BOT_TOKEN = env.secret("DISCORD_BOT_TOKEN", required=DEPLOYED)
DISCORD_SANDBOX = not DISCORD_BOT_TOKEN
_fake_discord = f"http://127.0.0.1:{SANDBOX_DISCORD_PORT}"
if DISCORD_SANDBOX:
    DISCORD_BOT_TOKEN = "sandbox-bot-token"
DISCORD_API_BASE = env.str(
    "DISCORD_API_BASE",
    f"{_fake_discord}/api/v10" if DISCORD_SANDBOX else "https://discord.com/api/v10",
).rstrip("/")
DISCORD_OAUTH_AUTHORIZE_URL = env.str(
    "DISCORD_OAUTH_AUTHORIZE_URL",
    f"{_fake_discord}/oauth2/authorize"
    if DISCORD_SANDBOX
    else "https://discord.com/oauth2/authorize",
)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# CSP form-action also applies to the redirect that follows a POST: Checkout and the billing
# portal (Stripe's hosted pages, or the fake Stripe that serves them in the sandbox) and
# Discord's OAuth consent page. Only these, so an injected form cannot post anywhere else.
_stripe_pages = (
    ["https://checkout.stripe.com", "https://billing.stripe.com"]
    if _origin(STRIPE_API_BASE) == "https://api.stripe.com"
    else [_origin(STRIPE_API_BASE)]
)
CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"] += [
    *_stripe_pages,
    _origin(DISCORD_OAUTH_AUTHORIZE_URL),
]
DISCORD_GATEWAY_URL = env.str(
    "DISCORD_GATEWAY_URL",
    f"ws://127.0.0.1:{SANDBOX_DISCORD_PORT}/gateway"
    if DISCORD_SANDBOX
    else "wss://gateway.discord.gg",
)
DISCORD_CLIENT_ID = env.str("DISCORD_CLIENT_ID", "100000000000000001" if DISCORD_SANDBOX else "")
DISCORD_CLIENT_SECRET = env.secret(
    "DISCORD_CLIENT_SECRET",
    required=DEPLOYED,
    default="sandbox-client-secret",
)
DISCORD_GUILD_ID = env.str("DISCORD_GUILD_ID", "200000000000000001" if DISCORD_SANDBOX else "")
DISCORD_ROLE_IDS = {
    "squire": env.str("DISCORD_ROLE_SQUIRE_ID", "300000000000000001" if DISCORD_SANDBOX else ""),
    "knight": env.str("DISCORD_ROLE_KNIGHT_ID", "300000000000000002" if DISCORD_SANDBOX else ""),
    "lord": env.str("DISCORD_ROLE_LORD_ID", "300000000000000003" if DISCORD_SANDBOX else ""),
    "debtor": env.str("DISCORD_ROLE_DEBTOR_ID", "300000000000000004" if DISCORD_SANDBOX else ""),
}
DISCORD_INTRODUCTIONS_CHANNEL_ID = env.str(
    "DISCORD_INTRODUCTIONS_CHANNEL_ID", "400000000000000001" if DISCORD_SANDBOX else ""
)
DISCORD_BILLING_SUPPORT_CHANNEL_ID = env.str(
    "DISCORD_BILLING_SUPPORT_CHANNEL_ID", "400000000000000002" if DISCORD_SANDBOX else ""
)
DISCORD_ADMIN_CHANNEL_ID = env.str(
    "DISCORD_ADMIN_CHANNEL_ID", "400000000000000003" if DISCORD_SANDBOX else ""
)
DISCORD_INVITE_URL = env.str("DISCORD_INVITE_URL", f"{_fake_discord}/" if DISCORD_SANDBOX else "")
DISCORD_TIMEOUT_SECONDS = env.float("DISCORD_TIMEOUT_SECONDS", 5.0)
# Requests/s every client of the bot in one process shares (Discord's global limit is 50/s).
DISCORD_GLOBAL_RATE = env.float("DISCORD_GLOBAL_RATE", 45.0)
# Open the circuit long before Discord's 10,000 invalid requests per 10 minutes ban.
DISCORD_BREAKER_THRESHOLD = env.int("DISCORD_BREAKER_THRESHOLD", 1000)
DISCORD_BREAKER_COOLDOWN_SECONDS = env.int("DISCORD_BREAKER_COOLDOWN_SECONDS", 60)
if DEPLOYED:
    _missing = [
        name
        for name, value in {
            "DISCORD_CLIENT_ID": DISCORD_CLIENT_ID,
            "DISCORD_GUILD_ID": DISCORD_GUILD_ID,
            "DISCORD_ROLE_SQUIRE_ID": DISCORD_ROLE_IDS["squire"],
            "DISCORD_ROLE_KNIGHT_ID": DISCORD_ROLE_IDS["knight"],
            "DISCORD_ROLE_LORD_ID": DISCORD_ROLE_IDS["lord"],
            "DISCORD_ROLE_DEBTOR_ID": DISCORD_ROLE_IDS["debtor"],
            "DISCORD_INTRODUCTIONS_CHANNEL_ID": DISCORD_INTRODUCTIONS_CHANNEL_ID,
            "DISCORD_BILLING_SUPPORT_CHANNEL_ID": DISCORD_BILLING_SUPPORT_CHANNEL_ID,
            "DISCORD_INVITE_URL": DISCORD_INVITE_URL,
        }.items()
        if not value
    ]
    if _missing:
        raise ImproperlyConfigured(f"{', '.join(_missing)} required in {DJANGO_ENV}")

# --- Email (django-anymail in production) ---------------------------------------------
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    "anymail.backends.resend.EmailBackend"
    if DJANGO_ENV == "production"
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))
RESEND_API_KEY = env.secret("RESEND_API_KEY", required=False)
ANYMAIL = {"RESEND_API_KEY": RESEND_API_KEY} if RESEND_API_KEY else {}
if EMAIL_BACKEND.startswith("anymail.backends.resend") and not RESEND_API_KEY:
    raise ImproperlyConfigured("RESEND_API_KEY is required by the Resend EMAIL_BACKEND")
# Real credentials only with real secrets and production-safe settings: development and test
# run DEBUG on, with the repository's SECRET_KEY and insecure cookies, so they may only talk to
# the fakes (on this machine). A live key anywhere but production is refused as well.
if not DEPLOYED:
    _real = [
        name
        for name, real in (
            ("STRIPE_SECRET_KEY", not SANDBOX and not is_loopback_url(STRIPE_API_BASE)),
            ("DISCORD_BOT_TOKEN", not DISCORD_SANDBOX and not is_loopback_url(DISCORD_API_BASE)),
            ("RESEND_API_KEY", bool(RESEND_API_KEY)),
        )
        if real
    ]
    if _real:
        raise ImproperlyConfigured(
            f"{', '.join(_real)} is a real credential: DJANGO_ENV={DJANGO_ENV} runs only against "
            "the sandbox; set DJANGO_ENV=staging (Stripe test mode) or production, with their "
            "secrets"
        )
if STRIPE_LIVE_MODE and DJANGO_ENV != "production":
    raise ImproperlyConfigured(
        "STRIPE_SECRET_KEY is a live key: it runs only with DJANGO_ENV=production, "
        f"not {DJANGO_ENV}"
    )
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "gatekeeper@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_REPLY_TO = env.str("EMAIL_REPLY_TO", DEFAULT_FROM_EMAIL)
ADMIN_EMAIL = env.str("ADMIN_EMAIL")
EMAIL_TIMEOUT = 10

# --- Task queue (django-q2) -----------------------------------------------------------
# timeout < retry: a task is only presented again after it could no longer be running.
Q_CLUSTER = {
    "name": "gateway",
    "workers": env.int("Q_WORKERS", 2),
    "timeout": env.int("Q_TIMEOUT", 300),
    "retry": env.int("Q_RETRY", 330),
    "max_attempts": env.int("Q_MAX_ATTEMPTS", 5),
    "ack_failures": True,
    "save_limit": 1000,
    "catch_up": False,
    "queue_limit": 50,
    "poll": 0.5,
    "orm": "default",
    "sync": DJANGO_ENV == "test" and env.bool("Q_SYNC", True),
}
if REDIS_URL:
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = REDIS_URL
if Q_CLUSTER["timeout"] >= Q_CLUSTER["retry"]:
    raise ImproperlyConfigured("Q_TIMEOUT must be lower than Q_RETRY")

# --- Logging and Sentry ---------------------------------------------------------------
LOG_FORMAT = env.choice("LOG_FORMAT", ("json", "console"), "json" if DEPLOYED else "console")
LOG_LEVEL = env.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
LOGGING = build_logging(LOG_FORMAT, LOG_LEVEL)
# The inbound header is removed by RealClientIPMiddleware unless a trusted proxy set it.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = True
# The `ip` of every log line is the address RealClientIPMiddleware resolved (the one the rate
# limits count), never a forwarded header django-structlog (ipware) would read on its own.
IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)

SENTRY_DSN = env.secret("SENTRY_DSN", required=False)
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", 0.0)
SENTRY_RELEASE = env.str("SENTRY_RELEASE", env.str("GIT_SHA", "unknown"))

# Readiness (/health/ready): how old a sign of life may be before the check fails.
HEALTH_WORKER_MAX_AGE_SECONDS = env.int("HEALTH_WORKER_MAX_AGE_SECONDS", 300)
HEALTH_BOT_MAX_AGE_SECONDS = env.int("HEALTH_BOT_MAX_AGE_SECONDS", 300)
HEALTH_RECONCILIATION_MAX_AGE_HOURS = env.int("HEALTH_RECONCILIATION_MAX_AGE_HOURS", 26)
HEALTH_WEBHOOK_BACKLOG_MAX_AGE_SECONDS = env.int("HEALTH_WEBHOOK_BACKLOG_MAX_AGE_SECONDS", 900)
