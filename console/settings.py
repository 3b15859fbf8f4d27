"""Settings, read from the environment.

DATABASE_URL, REDIS_URL    external servers; when unset, the embedded ones under REPLAYDESK_HOME
                            (started by the `replaydesk` command, see console/embedded.py)
SECRET_KEY, DEBUG, ALLOWED_HOSTS, REPLAYDESK_HOME
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from console import user_apps
from console.env import default_home, env_bool, env_list, redis_url_for_celery
from core.json import JSON_VALUE_SCHEMA

BASE_DIR = Path(__file__).resolve().parent.parent
REPLAYDESK_HOME = default_home()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or ""
if not SECRET_KEY:
    from console.env import local_secret_key

    SECRET_KEY = local_secret_key(REPLAYDESK_HOME)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "core",
    "console",
    "streams",
    "recovery",
]
# The identity demo (users, groups, permissions: projections of `user-*` and `group-*` streams, names real
# systems use) is installed only when asked for: `replaydesk up --demo`, `replaydesk demo`, or
# REPLAYDESK_DEMO=1. A production start never folds someone's own `user-*` events with the demo's code.
REPLAYDESK_DEMO = env_bool("REPLAYDESK_DEMO", False)
if REPLAYDESK_DEMO:
    INSTALLED_APPS.append("demo")
# Your own apps (comma-separated importable packages): their `projections` modules declare projections
# (docs/projections.md). A name that cannot be imported stops the start (console/user_apps.py).
REPLAYDESK_APPS = user_apps.checked(env_list("REPLAYDESK_APPS", []), installed=INSTALLED_APPS)
INSTALLED_APPS += REPLAYDESK_APPS

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads a body, opens a session or logs anyone in.
    "core.limits.BodySizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who appends while a request is answered: its user, asked at the append (core/principals.py).
    "core.principals.PrincipalMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.csp.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

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
                "console.context_processors.approvals",
            ],
        },
    },
]

# The embedded servers write their addresses here while they run (see console/cli.py).
DATABASE_URL = os.environ.get("DATABASE_URL") or "postgresql://localhost/replaydesk"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
# PGAPPNAME (libpq's own variable) names a process's sessions in pg_stat_activity, e.g. per tier.
DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = (
    os.environ.get("PGAPPNAME") or "replaydesk"
)
# Parameters travel apart from the SQL (no client-side quoting): bulk statements pass large arrays.
DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
# Statements are prepared only where the code asks (`prepare=True`: the append, an API token's look-up,
# the API's pages of events, the lag count);
# psycopg's automatic preparation is off in effect (a threshold no query reaches), as Django has it.
DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 2**62
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "replaydesk",
    }
}

# Argon2id first: memory-hard, and with Django's parameters (100 MiB, 2 passes) about a third of the time
# of its PBKDF2 default (a million rounds) on one core, which a login and every re-authentication wait
# for. Passwords hashed by another of these still work, and are hashed again with Argon2 at their next
# login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"

# Single sign-on with an OpenID provider (console/oidc.py; mozilla-django-oidc): on when the client id
# is set, with the provider's endpoints. Roles from a claim, mapped group=role; local passwords can be
# switched off.
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", "")
OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.environ.get("OIDC_RP_SCOPES", "openid email profile")
OIDC_USE_PKCE = env_bool("OIDC_USE_PKCE", True)
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=refused"
REPLAYDESK_OIDC_NAME = os.environ.get("REPLAYDESK_OIDC_NAME", "single sign-on")
REPLAYDESK_OIDC_USERNAME_CLAIM = os.environ.get("REPLAYDESK_OIDC_USERNAME_CLAIM", "preferred_username")
REPLAYDESK_OIDC_ROLE_CLAIM = os.environ.get("REPLAYDESK_OIDC_ROLE_CLAIM", "groups")
REPLAYDESK_OIDC_ROLE_MAP = env_list("REPLAYDESK_OIDC_ROLE_MAP", [])
REPLAYDESK_LOCAL_LOGIN = env_bool("REPLAYDESK_LOCAL_LOGIN", True)
AUTHENTICATION_BACKENDS = [
    *(["django.contrib.auth.backends.ModelBackend"] if REPLAYDESK_LOCAL_LOGIN else []),
    "console.oidc.Backend",
]
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = REPLAYDESK_HOME / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Requests carry at most one batch: 1,000 events of at most 1 MiB each would be too much to hold,
# so a request body is capped here and each event again in the append service.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("REPLAYDESK_MAX_BODY_BYTES", 16 * 1024 * 1024))

# Request rates (console/limits.py): "N/period" (600/min, 10/15min, 5000/h) or "off". API budgets are per
# user (token or session; per IP address when anonymous); login failures per username and address (the
# guessing brake), per username from anywhere (a higher one, for guesses spread over many addresses), and
# per address.
REPLAYDESK_RATES = {
    "append": os.environ.get("REPLAYDESK_RATE_APPEND", "6000/min"),
    "write": os.environ.get("REPLAYDESK_RATE_WRITE", "600/min"),
    "subscribe": os.environ.get("REPLAYDESK_RATE_SUBSCRIBE", "6000/min"),
    "read": os.environ.get("REPLAYDESK_RATE_READ", "6000/min"),
    "login_user_ip": os.environ.get("REPLAYDESK_RATE_LOGIN_USER_IP", "10/15min"),
    "login_user": os.environ.get("REPLAYDESK_RATE_LOGIN_USER", "100/15min"),
    "login_ip": os.environ.get("REPLAYDESK_RATE_LOGIN_IP", "50/15min"),
}

# Content-Security-Policy on every response: scripts and styles from this server's files only (no inline
# script, no inline style; htmx's own indicator style is in app.css), nothing framed, no plugins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # The favicon is a data: URI; the lag charts are inline SVG.
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

SESSION_COOKIE_HTTPONLY = True
# Production posture by default; `replaydesk up` on a laptop turns the two HTTPS-only ones off for
# plain http://localhost (see console/cli.py).
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# /healthz and /readyz are probed over plain HTTP by load balancers inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SILENCED_SYSTEM_CHECKS = env_list("SILENCED_SYSTEM_CHECKS", [])

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "console.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.roles.ReadAllowed"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Non-ASCII as \u escapes: an error that quotes a client's text (an unknown field's name, say)
    # renders even when that text holds a lone surrogate, which UTF-8 cannot encode.
    "UNICODE_JSON": False,
    # Finite numbers and bounded nesting (core/json.py): a body that breaks either is a 400, not a 500.
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.problems.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["core.limits.ApiRateThrottle"],
    # Proxies in front that append to X-Forwarded-For; 0 trusts REMOTE_ADDR alone (what the audit records).
    "NUM_PROXIES": int(os.environ.get("REPLAYDESK_NUM_PROXIES", 0)),
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Replaydesk API",
    "DESCRIPTION": "Append and read events with optimistic concurrency and idempotency.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH /jobs/{id} takes a whole ChangeIn: its one field is required there too.
    "COMPONENT_SPLIT_PATCH": False,
    # 3.1: JSON Schema 2020-12, which can say that no key of an event's data holds a NUL (propertyNames).
    "OAS_VERSION": "3.1.0",
    "APPEND_COMPONENTS": {"schemas": {"JsonValue": JSON_VALUE_SCHEMA}},
    # Two sets of kinds, each named once: a job's kind (in requests and answers) and a consumer's.
    "ENUM_NAME_OVERRIDES": {
        "JobKindEnum": "recovery.kinds.base.choices",
        "ConsumerKindEnum": "streams.models.Consumer.Kind",
        "ConsumerStateEnum": "streams.models.Consumer.State",
    },
    # Swagger UI's files come from the drf-spectacular-sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.limits.document_limits",
        "core.api.document_parsing",
    ],
}

CELERY_BROKER_URL = redis_url_for_celery(REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(REPLAYDESK_HOME / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {
    # The safety net under NOTIFY (see streams/tasks.py).
    "consumers-tick": {
        "task": "streams.tasks.tick",
        "schedule": 5.0,
        "options": {"queue": "live", "expires": 5},
    },
    "consumers-lag-sample": {
        "task": "streams.tasks.sample_lag",
        "schedule": float(os.environ.get("REPLAYDESK_LAG_SAMPLE_SECONDS", 10)),
        "options": {"queue": "live", "expires": 10},
    },
    # Jobs whose worker died or whose message Redis lost are nudged again (see recovery/runner/reconcile.py).
    "jobs-reconcile": {
        "task": "recovery.tasks.reconcile",
        "schedule": 10.0,
        # Not on `recovery`: busy lanes there must not delay the nudge that revives a dead job.
        "options": {"queue": "default", "expires": 10},
    },
    "jobs-schedule": {
        "task": "recovery.tasks.scheduled_jobs",
        "schedule": 60.0,
        "options": {"queue": "default", "expires": 60},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# Mail (Django's settings, from the environment): approvers are told by email when a job waits for them.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", 25))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "replaydesk@localhost")
# Who may approve is told by email when a job waits (on when EMAIL_HOST is set), and by a Slack-compatible
# webhook when its URL is given (held to REPLAYDESK_SINK_ALLOW's rules). recovery/notify.py.
REPLAYDESK_APPROVAL_EMAIL = env_bool("REPLAYDESK_APPROVAL_EMAIL", bool(EMAIL_HOST))
REPLAYDESK_APPROVAL_WEBHOOK_URL = os.environ.get("REPLAYDESK_APPROVAL_WEBHOOK_URL", "").strip()
# The console's address as its users reach it (https://replaydesk.example.com), for links in notifications.
REPLAYDESK_PUBLIC_URL = os.environ.get("REPLAYDESK_PUBLIC_URL", "").strip()

# Where snapshots of projections are kept: S3-compatible object storage when REPLAYDESK_SNAPSHOT_URL is
# s3://bucket/prefix (endpoint, region and credentials from boto3's environment variables), else this
# directory (the same storage on every recovery worker; back it up). recovery/snapshot_store.py.
REPLAYDESK_SNAPSHOT_URL = os.environ.get("REPLAYDESK_SNAPSHOT_URL", "").strip()
REPLAYDESK_SNAPSHOT_DIR = Path(os.environ.get("REPLAYDESK_SNAPSHOT_DIR") or REPLAYDESK_HOME / "snapshots")

# The data set a fault drill plays its story with (recovery/drill/dataset.py), in its scratch database.
REPLAYDESK_DRILL_DATA_SET = os.environ.get("REPLAYDESK_DRILL_DATA_SET", "demo.drill.IDENTITY")

# Scheduled snapshots: every N minutes (0 = off), keeping the newest M; a nightly verify at HH:MM UTC.
REPLAYDESK_SNAPSHOT_EVERY_MINUTES = float(os.environ.get("REPLAYDESK_SNAPSHOT_EVERY_MINUTES", 60))
REPLAYDESK_SNAPSHOT_KEEP = int(os.environ.get("REPLAYDESK_SNAPSHOT_KEEP", 24))
REPLAYDESK_VERIFY_NIGHTLY_AT = os.environ.get("REPLAYDESK_VERIFY_NIGHTLY_AT", "")
# Replays and restores split the streams into this many lanes, run in parallel by the workers.
REPLAYDESK_REPLAY_SHARDS = int(os.environ.get("REPLAYDESK_REPLAY_SHARDS", 4))
# At most this many events per transaction of a replay, restore or verify (0: each projection's own,
# ten live batches); smaller keeps transactions short on a busy database.
REPLAYDESK_REPLAY_BATCH_MAX = int(os.environ.get("REPLAYDESK_REPLAY_BATCH_MAX", 0))
# How long a job works before it checkpoints and re-enqueues itself (a killed worker costs at most this).
REPLAYDESK_JOB_SLICE_SECONDS = float(os.environ.get("REPLAYDESK_JOB_SLICE_SECONDS", 5))
# Whether a change to a consumer or a source (created, resumed, …) wakes it through the workers at once.
# Off only for a process that runs its consumers and follows its sources itself (a drill's sandbox).
REPLAYDESK_CONSUMERS_WAKE = env_bool("REPLAYDESK_CONSUMERS_WAKE", True)

# Four-eyes approvals: "kind=N,…" overrides how many a job of a kind needs before it may run (each kind
# declares its default: JobKind.approvals in recovery/kinds), and how long an approval counts.
_approval_overrides = [item.partition("=") for item in os.environ.get("REPLAYDESK_APPROVALS", "").split(",")]
REPLAYDESK_APPROVALS_REQUIRED = {
    kind.strip(): int(count) for kind, _, count in _approval_overrides if kind.strip()
}
REPLAYDESK_APPROVAL_HOURS = float(os.environ.get("REPLAYDESK_APPROVAL_HOURS", 24))

# Personal data: JSON paths into events (data.… or metadata.…) masked for roles without the unmask
# permission, in pages, the API and exports alike.
REPLAYDESK_PII_PATHS = [
    path.strip()
    for path in os.environ.get("REPLAYDESK_PII_PATHS", "data.email,data.name,metadata.ip").split(",")
    if path.strip()
]
# Approving asks for the password again unless it was given within this many seconds.
REPLAYDESK_REAUTH_SECONDS = float(os.environ.get("REPLAYDESK_REAUTH_SECONDS", 300))

# Read-your-writes: how long a projection read with min_position waits before answering 503. A waiting
# read holds a request thread, so at most so many wait at once in each web server process (by default
# half its threads: the rest stay free for appends and health checks) and for each user across processes;
# more are answered 429 (streams/read_waits.py).
REPLAYDESK_READ_WAIT_SECONDS = float(os.environ.get("REPLAYDESK_READ_WAIT_SECONDS", 5))
# The threads of each web server process (`replaydesk up` starts gunicorn with this many).
REPLAYDESK_WEB_THREADS = int(os.environ.get("REPLAYDESK_WEB_THREADS", 4))
REPLAYDESK_READ_WAITS_PER_PROCESS = int(
    os.environ.get("REPLAYDESK_READ_WAITS_PER_PROCESS", max(1, REPLAYDESK_WEB_THREADS // 2))
)
REPLAYDESK_READ_WAITS_PER_USER = int(
    os.environ.get("REPLAYDESK_READ_WAITS_PER_USER", REPLAYDESK_READ_WAITS_PER_PROCESS)
)
# A subscription's fetch waits for events at most this long, whatever it asks (it takes a waiting slot
# as a read-your-writes read does).
REPLAYDESK_FETCH_WAIT_MAX_SECONDS = float(os.environ.get("REPLAYDESK_FETCH_WAIT_MAX_SECONDS", 30))
# API reads that list events stop before their response passes this many bytes (always at least one
# event) and give `next` for the rest.
REPLAYDESK_READ_MAX_BYTES = int(os.environ.get("REPLAYDESK_READ_MAX_BYTES", 4 * 1024 * 1024))

# How long /readyz keeps a result, so that a busy prober cannot hammer the database; how long it waits
# for a worker to answer its ping.
READYZ_CACHE_SECONDS = float(os.environ.get("READYZ_CACHE_SECONDS", 3))
READYZ_WORKER_TIMEOUT = float(os.environ.get("READYZ_WORKER_TIMEOUT", 1))

# How long an API token lasts unless `replaydesk token` is told otherwise (0: tokens never expire).
REPLAYDESK_TOKEN_DAYS = int(os.environ.get("REPLAYDESK_TOKEN_DAYS", 90))

# A bearer token Prometheus may use for /metrics without a user (empty: only users' API tokens).
REPLAYDESK_METRICS_TOKEN = os.environ.get("REPLAYDESK_METRICS_TOKEN", "")

# A consumer's error counts as current (health `failing`) for this long unless it has moved on since.
REPLAYDESK_ERROR_RECENT_SECONDS = float(os.environ.get("REPLAYDESK_ERROR_RECENT_SECONDS", 300))

# Where sinks may deliver besides public addresses (streams/sink_destinations.py): comma-separated host
# names, IP addresses and CIDR networks, each optionally with :port, e.g. "hooks.corp,10.20.0.0/16".
# Empty: no loopback, private, link-local or metadata address is reached.
REPLAYDESK_SINK_ALLOW = env_list("REPLAYDESK_SINK_ALLOW", [])

# Where sources may be reached besides public addresses (streams/source_connect.py), in the same form
# as REPLAYDESK_SINK_ALLOW. A DSN through a local socket counts as loopback.
REPLAYDESK_SOURCE_ALLOW = env_list("REPLAYDESK_SOURCE_ALLOW", [])
# The key that encrypts sources' DSNs (a Fernet key: `replaydesk source key` prints a new one); by
# default one derived from SECRET_KEY, so that changing SECRET_KEY makes stored DSNs unreadable.
REPLAYDESK_SOURCE_KEY = os.environ.get("REPLAYDESK_SOURCE_KEY", "")
# Events a follower reads from a source and records in one transaction.
REPLAYDESK_SOURCE_BATCH = int(os.environ.get("REPLAYDESK_SOURCE_BATCH", 1000))
# The same for a backfill job copying a source's history: bigger, as nobody waits on one batch, and each
# transaction's fixed costs (its commit, the source's row, the stream rows' updates) are shared by more.
REPLAYDESK_SOURCE_BACKFILL_BATCH = int(os.environ.get("REPLAYDESK_SOURCE_BACKFILL_BATCH", 5000))

# How long an unmasked event's personal data stays shown to the person who unmasked it.
REPLAYDESK_UNMASK_SECONDS = float(os.environ.get("REPLAYDESK_UNMASK_SECONDS", 300))
