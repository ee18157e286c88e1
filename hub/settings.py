"""Settings of the hub, read from the environment (see `.env.example` for every variable).

Development defaults need no running service: SQLite and a filesystem broker under `var/`, and a
secret key and encryption key generated there on first use. With DEBUG off, the hub refuses to
start without SECRET_KEY and HUB_ENCRYPTION_KEYS.
"""

from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("HUB_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)


def _generated_secret(name: str, make) -> str:
    """Return a development secret kept in `var/`, creating it on first use."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _required_or_generated(name: str, filename: str, make) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is off (see .env.example).")
    return _generated_secret(filename, make)


SECRET_KEY = _required_or_generated(
    "SECRET_KEY", "secret_key", lambda: Fernet.generate_key().decode() + Fernet.generate_key().decode()
)
# Comma-separated Fernet keys; the first encrypts, all decrypt (rotation: prepend a new key, then
# run `manage.py hub_rotate_secrets`).
HUB_ENCRYPTION_KEYS = [
    k.strip()
    for k in _required_or_generated(
        "HUB_ENCRYPTION_KEYS", "encryption_key", lambda: Fernet.generate_key().decode()
    ).split(",")
    if k.strip()
]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "hub.admin_site.HubAdminConfig",  # django.contrib.admin, branded and grouped (hub/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "hub.apps.HubConfig",
    "events.apps.EventsConfig",
    "integrations.apps.IntegrationsConfig",
    "integrations.sources.apps.SourcesConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"

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
                "hub.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'hub.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# DATABASE_URL points at a pooler in transaction mode (PgBouncer, docs/scaling.md): consecutive
# transactions of a connection may run on different server connections, so nothing may outlive a
# transaction there: no prepared statements, no WITH HOLD cursors (Django's server-side cursors
# outside a transaction). The hub's own code takes only transaction-level locks.
DATABASE_TRANSACTION_POOLING = env.bool("DATABASE_TRANSACTION_POOLING", default=False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The hot paths (hub/raw_cursor.py) bind on the server; a statement they run this many times
    # on a connection is prepared (parsed and planned once). Django turns this off for connection
    # poolers: set it empty behind a pooler in transaction mode that keeps no prepared statements.
    _threshold = env.str("DATABASE_PREPARE_THRESHOLD", default="" if DATABASE_TRANSACTION_POOLING else "5")
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = DATABASE_TRANSACTION_POOLING
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        int(_threshold) if _threshold else None
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["hub.auth_backends.EmailOrUsernameBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Mail, used for members' invitations only: without EMAIL_HOST nothing is sent and the Members
# screen shows the one-time link to copy.
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="hub@localhost")
HUB_INVITATION_DAYS = env.int("HUB_INVITATION_DAYS", default=7)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed names need `collectstatic` first (production); development and tests skip it.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env.bool("STATIC_MANIFEST", default=not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Serve straight from the apps' static folders when collectstatic has not run (development, tests).
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_RESULT_BACKEND = env.str(
    "CELERY_RESULT_BACKEND",
    default=CELERY_BROKER_URL
    if CELERY_BROKER_URL.startswith(("redis:", "rediss:"))
    else f"file://{VAR_DIR / 'celery-results'}",
)
if CELERY_BROKER_URL.startswith("filesystem:"):
    _queue_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    (VAR_DIR / "celery-results").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        # Exchange tables (kombu writes them to ./control by default, i.e. into the checkout).
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers log through Django's LOGGING (and its redaction filter) rather than Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {}

# --- API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hub.authentication.AppApiKeyAuthentication",
        "hub.authentication.CustomerTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["hub.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hub.api.exception_handler",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "hub.negotiation.ApiContentNegotiation",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Integration hub API",
    "DESCRIPTION": "Mantle-compatible App API and the hub's own endpoints.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Prefix of API keys, so leaked keys can be found by scanners.
HUB_API_KEY_PREFIX = env.str("HUB_API_KEY_PREFIX", default="hub_live_")
# How often at most `ApiKey.last_used_at` is written (seconds).
HUB_API_KEY_TOUCH_INTERVAL = env.int("HUB_API_KEY_TOUCH_INTERVAL", default=60)
# Seconds a process may reuse a key it found valid (0: look it up on every request). A key revoked
# in another process is refused everywhere within this time; in the revoking process at once.
HUB_API_KEY_CACHE_SECONDS = env.float("HUB_API_KEY_CACHE_SECONDS", default=2.0)

# --- Security ---------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Usage events -------------------------------------------------------------------------------
HUB_USAGE_EVENT_MAX_BYTES = env.int("HUB_USAGE_EVENT_MAX_BYTES", default=32 * 1024)
HUB_USAGE_EVENTS_MAX_PER_REQUEST = env.int("HUB_USAGE_EVENTS_MAX_PER_REQUEST", default=1000)
HUB_USAGE_EVENTS_MAX_REQUEST_BYTES = env.int("HUB_USAGE_EVENTS_MAX_REQUEST_BYTES", default=1024 * 1024)
HUB_IDENTIFY_MAX_REQUEST_BYTES = env.int("HUB_IDENTIFY_MAX_REQUEST_BYTES", default=256 * 1024)
HUB_USAGE_EVENT_MAX_FUTURE_SECONDS = env.int("HUB_USAGE_EVENT_MAX_FUTURE_SECONDS", default=24 * 3600)

# --- Hardening ----------------------------------------------------------------------------------
# API rate limit per API key (per customer for customer-token calls): "<requests>/<seconds>s",
# or "off". Counted in Redis; without Redis (the development filesystem broker) it is off.
HUB_RATE_LIMIT = env.str("HUB_RATE_LIMIT", default="6000/60s")
HUB_RATE_LIMIT_REDIS_URL = env.str(
    "HUB_RATE_LIMIT_REDIS_URL",
    default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis:", "rediss:")) else "",
)
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["hub.throttling.ApiKeyRateThrottle"]
# Proxies in front of the hub that append to X-Forwarded-For (client IPs for throttling).
REST_FRAMEWORK["NUM_PROXIES"] = env.int("HUB_NUM_PROXIES", default=0)
# Largest request body accepted, refused with 413 before any view reads it (hub.middleware).
HUB_MAX_BODY_BYTES = env.int("HUB_MAX_BODY_BYTES", default=5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = HUB_MAX_BODY_BYTES
# Right after SecurityMiddleware: before anything reads a body (CsrfViewMiddleware reads POST).
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "hub.middleware.BodySizeLimitMiddleware",
)
# Outside every other middleware but SecurityMiddleware: it sees each error answer of an API path.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "hub.middleware.ApiErrorMiddleware",
)
# Every handler redacts credentials (API keys, customer tokens, auth headers, write keys); Django's
# loggers go through the root handlers only, so no record can bypass the filter.
LOGGING["filters"] = {
    **LOGGING.get("filters", {}),
    "redact_secrets": {"()": "hub.log_redaction.SecretRedactionFilter"},
}
for _handler in LOGGING["handlers"].values():
    _handler.setdefault("filters", []).append("redact_secrets")
LOGGING.setdefault("loggers", {}).update(
    {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    }
)
# Login throttling: this many failed logins for a username, or from an IP, within the window
# (seconds) lock further attempts out until the window ends. Counted in the Django cache.
HUB_LOGIN_FAILURE_LIMIT = env.int("HUB_LOGIN_FAILURE_LIMIT", default=5)
HUB_LOGIN_FAILURE_WINDOW = env.int("HUB_LOGIN_FAILURE_WINDOW", default=15 * 60)
# HSTS preload is a one-way commitment for the domain and all its subdomains: an operator's
# decision (SECURE_HSTS_PRELOAD=1 after submitting to hstspreload.org), not a default.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "hub.openapi.document_common_errors",
    "integrations.sources.openapi.document_inbound_endpoints",
]

# --- Lifecycle activities out (integrations/, docs/segment.md) ---------------------------------
# Networks (CIDRs, comma-separated) outbound requests may reach although private, loopback or
# link-local; everything else non-public is refused (SSRF guard). Tests set 127.0.0.0/8.
HUB_OUTBOUND_ALLOW_NETWORKS = env.list("HUB_OUTBOUND_ALLOW_NETWORKS", default=[])
HUB_OUTBOUND_TIMEOUT = env.float("HUB_OUTBOUND_TIMEOUT", default=10.0)
# Seconds a delivery request may take before it counts as a timeout (and is retried).
HUB_DELIVERY_TIMEOUT = env.float("HUB_DELIVERY_TIMEOUT", default=10.0)
# Retry backoff: base * 2^(attempt-1) seconds, capped, with jitter; dead after the window.
HUB_DELIVERY_BACKOFF_BASE = env.float("HUB_DELIVERY_BACKOFF_BASE", default=10.0)
HUB_DELIVERY_BACKOFF_MAX = env.float("HUB_DELIVERY_BACKOFF_MAX", default=3600.0)
HUB_DELIVERY_RETRY_WINDOW = env.float("HUB_DELIVERY_RETRY_WINDOW", default=72 * 3600.0)
# Seconds one send task keeps sending before it hands over to a fresh task.
HUB_DELIVERY_SEND_BUDGET = env.float("HUB_DELIVERY_SEND_BUDGET", default=20.0)
# Send tasks started per integration when much is due (they split the rows with SKIP LOCKED).
HUB_DELIVERY_PARALLEL = env.int("HUB_DELIVERY_PARALLEL", default=2)
# Requests in flight to one integration at once, whatever process sends them: a destination that
# hangs holds at most this many send threads (plus its one probe).
HUB_DELIVERY_MAX_IN_FLIGHT = env.int("HUB_DELIVERY_MAX_IN_FLIGHT", default=2)
# Seconds a backlog's fan-out chunk (500 deliveries or more for one integration) waits for a free
# request slot before it writes its deliveries pending for a sender instead of sending them itself.
HUB_DELIVERY_SLOT_WAIT = env.float("HUB_DELIVERY_SLOT_WAIT", default=2.0)
# How long at most a worker task waits for its sends (run in the process's send threads) before it
# leaves them to their threads and serves the next task: less for a destination that usually
# answers faster, not at all for a probe or a destination slow lately (integrations/send_threads.py).
HUB_DELIVERY_PATIENCE = env.float("HUB_DELIVERY_PATIENCE", default=0.5)
# Backfills: usage events walked per transaction, and how long a running backfill may go without
# progress before the sweep restarts it (its worker was killed or its task lost).
HUB_BACKFILL_CHUNK = env.int("HUB_BACKFILL_CHUNK", default=1000)
HUB_BACKFILL_STALLED_SECONDS = env.float("HUB_BACKFILL_STALLED_SECONDS", default=60.0)
# How often the sweep dispatches forgotten activities and enqueues due deliveries (seconds).
HUB_DELIVERY_SWEEP_SECONDS = env.float("HUB_DELIVERY_SWEEP_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["integrations-deliveries-sweep"] = {
    "task": "integrations.deliveries_sweep",
    "schedule": HUB_DELIVERY_SWEEP_SECONDS,
    "options": {"expires": max(HUB_DELIVERY_SWEEP_SECONDS * 2, 2.0)},
}
# While a destination fails retryably its circuit is open: one probe request (one delivery) every
# this many seconds (or its Retry-After); the first success makes all its waiting deliveries due.
HUB_DELIVERY_PROBE_SECONDS = env.float("HUB_DELIVERY_PROBE_SECONDS", default=5.0)
# Retention: delivered deliveries (and their attempts) are deleted after this many days, failed
# and dead ones after the other; pending ones never. The scheduler prunes in small batches.
HUB_DELIVERY_KEEP_DELIVERED_DAYS = env.float("HUB_DELIVERY_KEEP_DELIVERED_DAYS", default=30)
HUB_DELIVERY_KEEP_FAILED_DAYS = env.float("HUB_DELIVERY_KEEP_FAILED_DAYS", default=90)
HUB_DELIVERY_PRUNE_SECONDS = env.float("HUB_DELIVERY_PRUNE_SECONDS", default=600.0)
CELERY_BEAT_SCHEDULE["integrations-deliveries-prune"] = {
    "task": "integrations.deliveries_prune",
    "schedule": HUB_DELIVERY_PRUNE_SECONDS,
    "options": {"expires": HUB_DELIVERY_PRUNE_SECONDS},
}

# --- Sources (integrations/sources: Segment tracking API, webhook URLs, the inbox) ---------------
# Segment's limits: 32 KB a message; 500 KB and 2,500 messages a batch (and a webhook request).
HUB_SOURCE_MESSAGE_MAX_BYTES = env.int("HUB_SOURCE_MESSAGE_MAX_BYTES", default=32 * 1024)
HUB_SOURCE_BATCH_MAX_BYTES = env.int("HUB_SOURCE_BATCH_MAX_BYTES", default=500 * 1024)
HUB_SOURCE_BATCH_MAX_MESSAGES = env.int("HUB_SOURCE_BATCH_MAX_MESSAGES", default=2500)
# Requests per source (its Segment tracking API calls and webhook URL together), like
# HUB_RATE_LIMIT: "<requests>/<seconds>s" or "off"; counted in the same Redis. Segment advises
# clients to stay under 500 requests/s.
HUB_SOURCE_RATE_LIMIT = env.str("HUB_SOURCE_RATE_LIMIT", default="30000/60s")
# Seconds a process may reuse the source it found by a write key or webhook token (0: look it up on
# every request). A credential rotated or a source disabled in another process is refused
# everywhere within this time; in the process that changed it at once.
HUB_SOURCE_CACHE_SECONDS = env.float("HUB_SOURCE_CACHE_SECONDS", default=2.0)
# How often the scheduler looks for inbox messages left pending (a lost task): seconds.
HUB_INBOX_SWEEP_SECONDS = env.float("HUB_INBOX_SWEEP_SECONDS", default=10.0)
# A pending message older than this (seconds) is taken as forgotten: the sweep enqueues a drain.
HUB_INBOX_STALE_SECONDS = env.float("HUB_INBOX_STALE_SECONDS", default=5.0)
# Messages a worker claims and processes in one transaction.
HUB_INBOX_BATCH_SIZE = env.int("HUB_INBOX_BATCH_SIZE", default=500)
CELERY_BEAT_SCHEDULE["sources-inbox-sweep"] = {
    "task": "sources.inbox_sweep",
    "schedule": HUB_INBOX_SWEEP_SECONDS,
    "options": {"expires": max(HUB_INBOX_SWEEP_SECONDS * 2, 2.0)},
}

# --- Usage metrics (events/metrics/rollups.py, docs/metrics.md) ----------------------------------
# How often the scheduler looks for rollup batches and metric builds left waiting (a lost task).
HUB_ROLLUP_SWEEP_SECONDS = env.float("HUB_ROLLUP_SWEEP_SECONDS", default=10.0)
# A batch waiting longer than this (seconds) is taken as forgotten: the sweep enqueues a drain.
HUB_ROLLUP_STALE_SECONDS = env.float("HUB_ROLLUP_STALE_SECONDS", default=5.0)
# Hours of hour rollup rows kept (only "last 24 hours" reads them; older ones are pruned by the
# sweep and not written). 0 keeps every hour row.
HUB_METRICS_HOUR_ROWS_HOURS = env.int("HUB_METRICS_HOUR_ROWS_HOURS", default=48)
CELERY_BEAT_SCHEDULE["events-rollups-sweep"] = {
    "task": "events.rollups_sweep",
    "schedule": HUB_ROLLUP_SWEEP_SECONDS,
    "options": {"expires": max(HUB_ROLLUP_SWEEP_SECONDS * 2, 2.0)},
}

# --- Raw usage events: partitions, retention, dedupe (events/partitions.py, docs/metrics.md) -----
# Monthly partitions made ahead of time by the scheduler, besides this month's.
HUB_USAGE_EVENT_PARTITIONS_AHEAD = env.int("HUB_USAGE_EVENT_PARTITIONS_AHEAD", default=3)
# An event id sent again within this many days of the first is a duplicate (exact); later, it is
# stored again. 0 keeps every dedupe key forever (the key table then grows like the events).
HUB_USAGE_EVENT_DEDUPE_DAYS = env.int("HUB_USAGE_EVENT_DEDUPE_DAYS", default=35)
# What happens to a partition past retention (per app, UsageEventRetention; default forever):
# "drop", or "detach" (kept as a table events_usageevent_archive_... for you to dump and drop).
HUB_USAGE_EVENT_RETENTION_MODE = env.str("HUB_USAGE_EVENT_RETENTION_MODE", default="drop")
if HUB_USAGE_EVENT_RETENTION_MODE not in ("drop", "detach"):
    raise ImproperlyConfigured('HUB_USAGE_EVENT_RETENTION_MODE must be "drop" or "detach".')
# Seconds partition DDL waits for a table lock before giving up until the next run (a long reader,
# such as a metric build, must not make every insert queue behind it).
HUB_USAGE_EVENT_DDL_LOCK_TIMEOUT = env.float("HUB_USAGE_EVENT_DDL_LOCK_TIMEOUT", default=2.0)
HUB_USAGE_EVENT_MAINTAIN_SECONDS = env.float("HUB_USAGE_EVENT_MAINTAIN_SECONDS", default=3600.0)
CELERY_BEAT_SCHEDULE["events-usage-event-storage"] = {
    "task": "events.usage_event_storage_maintain",
    "schedule": HUB_USAGE_EVENT_MAINTAIN_SECONDS,
    "options": {"expires": HUB_USAGE_EVENT_MAINTAIN_SECONDS},
}

# --- Operations (hub/observability, docs/operations.md) ------------------------------------------
# The Prometheus endpoint /metrics: off (404) unless set; then only `Authorization: Bearer <token>`.
HUB_METRICS_TOKEN = env.str("HUB_METRICS_TOKEN", default="")
# Every request gets an id (a sane incoming X-Request-ID, else a new one), echoed in the response,
# carried into the Celery tasks it enqueues and onto every log record (`request_id`).
MIDDLEWARE.insert(0, "hub.observability.request_id.RequestIdMiddleware")
MIDDLEWARE.insert(1, "hub.observability.prometheus.RequestMetricsMiddleware")
# "plain" (default) or "json": one JSON object per line, with the request id.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured('LOG_FORMAT must be "plain" or "json".')
LOGGING["formatters"]["json"] = {"()": "hub.observability.logging_json.JsonFormatter"}
LOGGING["filters"]["request_id"] = {"()": "hub.observability.request_id.RequestIdLogFilter"}
for _handler in LOGGING["handlers"].values():
    _handler["filters"].append("request_id")
    if LOG_FORMAT == "json":
        _handler["formatter"] = "json"
