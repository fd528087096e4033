"""Django settings, read from the environment.

Every default points at the local services (PostgreSQL on 127.0.0.1:5432, Redis on 6379,
RabbitMQ on 5672) so that nothing has to be set to start; production sets the secrets.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from leaderboard_project.secret_key import production_secret_key_check
from tasks.queues import QueueRole, durable_queues, role_queue_name

BASE_DIR = Path(__file__).resolve().parent.parent


# Strict: a value that is not one of these stops the start, naming the variable, where a
# typo ("ture") would otherwise turn a switch such as LEADERBOARD_PRODUCTION off unseen.
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _refused(name: str, raw: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={raw!r} is not {expected}")


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise _refused(name, raw, "an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise _refused(name, raw, "a number") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():  # set empty, as compose's ${VAR:-} does: unset
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _refused(name, raw, f"a boolean (one of {', '.join(sorted(_TRUE | _FALSE))})")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)
# Production (behind a TLS proxy) refuses to start without its own secret key, and turns
# on the HTTPS-only settings that `manage.py check --deploy` asks for. Off by default so
# `make run` and the tests serve plain HTTP on 127.0.0.1.
PRODUCTION = env_bool("LEADERBOARD_PRODUCTION", False)
DEV_SECRET_KEY = "dev-only-not-secret"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
if PRODUCTION:
    # A missing, empty, short or well-known key would let anyone forge sessions and
    # admin logins: production refuses to start rather than run with one.
    production_secret_key_check(SECRET_KEY, known=[DEV_SECRET_KEY, "change-me-in-production"])
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "rankings",
    "scores",
    "tasks",
    "operations",
    "pages",
]

MIDDLEWARE = [
    # First: probes answer behind any Host and over plain HTTP (see the class).
    "leaderboard_project.middleware.ProbesFirst",
    "leaderboard_project.metrics.ResponseMetricsMiddleware",
    "leaderboard_project.middleware.RefuseNulBytes",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "leaderboard_project.urls"
WSGI_APPLICATION = "leaderboard_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": env_str("LEADERBOARD_DB_NAME", "leaderboard"),
        "USER": env_str("LEADERBOARD_DB_USER", "postgres"),
        "PASSWORD": env_str("LEADERBOARD_DB_PASSWORD", ""),
        "HOST": env_str("LEADERBOARD_DB_HOST", "127.0.0.1"),
        "PORT": env_int("LEADERBOARD_DB_PORT", 5432),
        # Keep connections open across requests and tasks: a connect costs more than a batch.
        "CONN_MAX_AGE": env_int("LEADERBOARD_DB_CONN_MAX_AGE", 300),
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": env_str("LEADERBOARD_TEST_DB_NAME", "test_leaderboard")},
    }
}
# The web tier runs many threads per process (granian's blocking threads: a score request
# waits in one for its confirm), and a connection per thread would run PostgreSQL out of
# connections; bin/web sets this, and the threads share a bounded pool (psycopg_pool) of
# this many connections per process instead. 0 (workers, commands): a connection each.
LEADERBOARD_DB_POOL_SIZE = env_int("LEADERBOARD_DB_POOL_SIZE", 0)
# Threads per web process for Django's views (the score front door needs none: it awaits
# its confirms on the event loop). bin/web sets it from --threads.
LEADERBOARD_WEB_THREADS = env_int("LEADERBOARD_WEB_THREADS", 16)
if LEADERBOARD_DB_POOL_SIZE:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them; Django must not
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": 1,
            "max_size": LEADERBOARD_DB_POOL_SIZE,
            "timeout": env_float("LEADERBOARD_DB_POOL_TIMEOUT", 5.0),
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("LEADERBOARD_REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            # Reads fall back to the database when Redis is away; do not hang on it.
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
        },
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves static files from gunicorn too. It also looks in the apps' static/
# folders, so `make run` needs no collectstatic (the image runs it anyway).
WHITENOISE_USE_FINDERS = True

# A batch of 1000 events is about 100 KB; anything far past that is refused before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("LEADERBOARD_MAX_BODY_BYTES", 256 * 1024)

# --- REST framework -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["scores.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["leaderboard_project.api.JSONParser"],
    "EXCEPTION_HANDLER": "leaderboard_project.api.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        # Requests per API key, counted in Redis. Public reads are not throttled here: in
        # production the proxy in front limits them per client address.
        "api_key": env_str("LEADERBOARD_THROTTLE_KEY_RATE", "100000/minute"),
    },
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Leaderboard API",
    "DESCRIPTION": "Score ingestion and ranked reads for high-rate leaderboards.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Leaderboard pipeline ---------------------------------------------------------------
# Number of ingest queues; events are routed to one by a consistent hash of user_id.
LEADERBOARD_INGEST_PARTITIONS = env_int("LEADERBOARD_INGEST_PARTITIONS", 4)
# "merge_tree" (chords of top-K merges) or "sorted_set" (Redis sorted set is the top-N).
LEADERBOARD_RANKING_STRATEGY = env_str("LEADERBOARD_RANKING_STRATEGY", "merge_tree")
# The merge levels: a board's root runs at most once per window (100-250 ms keeps the
# top-N fresh while its cost is boards x 1/window, not events); up to F partials are
# merged per step, and a round needs ceil(log_F(partials in the window)) levels.
LEADERBOARD_MERGE_WINDOW_MS = env_int("LEADERBOARD_MERGE_WINDOW_MS", 100)
LEADERBOARD_MERGE_FAN_IN = env_int("LEADERBOARD_MERGE_FAN_IN", 16)
LEADERBOARD_MERGE_MAX_LEVELS = 10
# A round whose root has not finished after this long (its worker died) is taken over.
LEADERBOARD_ROUND_TAKEOVER_MS = env_int("LEADERBOARD_ROUND_TAKEOVER_MS", 30_000)
# A board has at most one root pending: its claim is held until that root starts, or for
# this long if it never does (its message lost), so a stalled rank tier queues one root
# per board per this interval rather than one per merge window.
LEADERBOARD_ROOT_CLAIM_TTL_MS = env_int("LEADERBOARD_ROOT_CLAIM_TTL_MS", 30_000)
# A publish carries the events of every request waiting in the process, up to this many;
# a request that gets no confirm within the timeout answers 503 (a memory alarm blocks
# publishers instead of failing them).
LEADERBOARD_PUBLISH_MAX_EVENTS = env_int("LEADERBOARD_PUBLISH_MAX_EVENTS", 1000)
# Messages in flight at once on a process's connection (each waits for its own confirm):
# a full message goes without waiting for the one before (scores.publisher).
LEADERBOARD_PUBLISH_MAX_IN_FLIGHT = env_int("LEADERBOARD_PUBLISH_MAX_IN_FLIGHT", 4)
LEADERBOARD_PUBLISH_CONFIRM_TIMEOUT = env_float("LEADERBOARD_PUBLISH_CONFIRM_TIMEOUT", 5.0)
# Admission control: past this many events waiting in the ingest queues (estimated from
# their depths, read every CHECK seconds by each web process) a score request answers 503
# with Retry-After and publishes nothing. About two seconds of work at the measured max
# rate: freshness stays within a few seconds under any overload.
LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS = env_int("LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS", 10_000)
# Past the bound only tenants over an equal split are refused; past this (0: twice the
# bound) everybody is.
LEADERBOARD_ADMISSION_HARD_BACKLOG_EVENTS = env_int("LEADERBOARD_ADMISSION_HARD_BACKLOG_EVENTS", 0)
LEADERBOARD_ADMISSION_CHECK_SECONDS = env_float("LEADERBOARD_ADMISSION_CHECK_SECONDS", 0.25)
# An ingest message returned to its queue this many times (its worker died on it each
# time) goes to the dead-letter queue. Innocent messages batched with it are returned at
# most once (see tasks.consuming), so the limit never catches them.
LEADERBOARD_INGEST_DELIVERY_LIMIT = env_int("LEADERBOARD_INGEST_DELIVERY_LIMIT", 10)
# A full ingest queue nacks publishes (503): far above the admission bound, it only
# matters when admission control is off or the web tier cannot read the queues.
LEADERBOARD_INGEST_QUEUE_MAX_MESSAGES = env_int("LEADERBOARD_INGEST_QUEUE_MAX_MESSAGES", 20_000)
# When ingest messages queue up, one transaction takes up to this many more of them.
LEADERBOARD_INGEST_TAKE_MESSAGES = env_int("LEADERBOARD_INGEST_TAKE_MESSAGES", 15)
LEADERBOARD_INGEST_TAKE_EVENTS = env_int("LEADERBOARD_INGEST_TAKE_EVENTS", 4000)
# Queue names are prefixed so that a test run never meets a running stack's messages.
LEADERBOARD_QUEUE_PREFIX = env_str("LEADERBOARD_QUEUE_PREFIX", "lb")
# How long processed event ids are kept for de-duplication.
LEADERBOARD_EVENT_ID_RETENTION_HOURS = env_int("LEADERBOARD_EVENT_ID_RETENTION_HOURS", 72)
# Redis key prefix for the top-N cache and rank index.
LEADERBOARD_REDIS_PREFIX = env_str("LEADERBOARD_REDIS_PREFIX", "lb")
# How stale a process's copy of a board may be: a board deleted or made again (same
# slug) reaches every web and worker process within this many seconds (one Redis read).
LEADERBOARD_BOARD_MEMO_CHECK_SECONDS = env_float("LEADERBOARD_BOARD_MEMO_CHECK_SECONDS", 1.0)
# A deleted board's rows go in chunks of this many users (scores and event ids), each
# chunk its own short transaction (tasks.cleanup).
LEADERBOARD_DELETE_CHUNK_USERS = env_int("LEADERBOARD_DELETE_CHUNK_USERS", 2000)
# A period is closed (its final top-N stored) this long after its end, once the ingest
# backlog is empty: events accepted just before the boundary may still be in flight.
LEADERBOARD_PERIOD_CLOSE_GRACE_SECONDS = env_int("LEADERBOARD_PERIOD_CLOSE_GRACE_SECONDS", 60)
# ... and this long after its end whatever the backlog (a load that never lets it empty).
LEADERBOARD_PERIOD_CLOSE_MAX_WAIT_SECONDS = env_int("LEADERBOARD_PERIOD_CLOSE_MAX_WAIT_SECONDS", 900)

# An erased user stays in the hidden sets of their boards this long after the rows were
# deleted, so the hand-off of a transaction that committed just before the delete cannot
# put them back into a rank index (rankings.erasure); their new events wait as long.
LEADERBOARD_ERASE_GRACE_SECONDS = env_float("LEADERBOARD_ERASE_GRACE_SECONDS", 2.0)
# How long a starting ingest worker waits for every ingest partition to have a consumer
# (its own or another worker's) before it exits with status 78 (tasks.worker_check).
LEADERBOARD_INGEST_COVERAGE_WAIT_SECONDS = env_float("LEADERBOARD_INGEST_COVERAGE_WAIT_SECONDS", 30.0)
# Mounts the bare DRF endpoint under /bench/ (the benchmark's web-framework baseline); off in production.
LEADERBOARD_BENCH_ENDPOINTS = env_bool("LEADERBOARD_BENCH_ENDPOINTS", False)

# --- Operations ------------------------------------------------------------------------
# /metrics is internal: a 404 unless LEADERBOARD_METRICS_PUBLIC is on (make run, or a
# deployment whose proxy keeps /metrics off the public path) or the scraper sends
# "Authorization: Bearer <LEADERBOARD_METRICS_TOKEN>".
LEADERBOARD_METRICS_PUBLIC = env_bool("LEADERBOARD_METRICS_PUBLIC", False)
LEADERBOARD_METRICS_TOKEN = env_str("LEADERBOARD_METRICS_TOKEN", "")

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("LEADERBOARD_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
# Chords count their members natively in Redis.
CELERY_RESULT_BACKEND = env_str("LEADERBOARD_RESULT_BACKEND", "redis://127.0.0.1:6379/1")
CELERY_IMPORTS = ("tasks.ingest", "tasks.ranking", "tasks.maintenance", "tasks.cleanup")
# JSON only: tasks take plain data, never pickled objects.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# A 202 waits for the broker's confirm: the message is on disk before we promise anything.
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
# Fail fast when the broker is down, so the client gets a 503 instead of a hung request.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": env_int("LEADERBOARD_PUBLISH_RETRIES", 2),
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("LEADERBOARD_BROKER_CONNECTION_TIMEOUT", 2.0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Messages are persistent and acknowledged only after the work is committed; a worker
# that dies mid-task has its message redelivered, and the de-duplication makes that safe.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A task that fails for good (not a passing outage: those retry) is rejected, not acked,
# so its message goes to the dead-letter queue instead of disappearing.
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
# Each worker process holds one unacknowledged message: a crash redelivers little, and
# a backlog stays on the queue where an ingest transaction can take several at once.
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("LEADERBOARD_PREFETCH_MULTIPLIER", 1)
# No task may run forever. An ingest batch past the soft limit (a store that hangs or
# holds a lock) is retried like an outage (tasks/ingest.py); past the hard limit its
# process is killed and the message redelivered.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("LEADERBOARD_TASK_SOFT_TIME_LIMIT", 60)
CELERY_TASK_TIME_LIMIT = env_int("LEADERBOARD_TASK_TIME_LIMIT", 90)
# Rank index upkeep (rankings/index_upkeep.py). A rebuild loads this many rows per task:
# at the measured ~36k rows/s, a couple of seconds, far inside the soft limit above.
LEADERBOARD_INDEX_BUILD_CHUNK_ROWS = env_int("LEADERBOARD_INDEX_BUILD_CHUNK_ROWS", 50_000)
# Users each board's reconcile verifies against the index (a rolling slice, keyset).
LEADERBOARD_INDEX_VERIFY_SLICE = env_int("LEADERBOARD_INDEX_VERIFY_SLICE", 5000)
# Boards the reconcile beat takes from the "touched" set per run (the rest wait a run),
# and boards of the slow sweep over every board per run (30 s: 10k boards in ~50 min).
LEADERBOARD_RECONCILE_MAX_BOARDS = env_int("LEADERBOARD_RECONCILE_MAX_BOARDS", 10_000)
LEADERBOARD_RECONCILE_SWEEP_BOARDS = env_int("LEADERBOARD_RECONCILE_SWEEP_BOARDS", 100)
# A per-board reconcile still queued after this is dropped: the next beat sends another.
LEADERBOARD_RECONCILE_TASK_EXPIRES = 120
# Chord members must store results; nothing else needs them for long.
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": {"timeout": 5.0}}
# Celery's Django fixup closes the database connection around every task unless this is
# set; reconnecting cost more than the batch. Connections are instead recycled like
# Django's own requests (CONN_MAX_AGE, health checks), see leaderboard_project/celery.py.
CELERY_DB_REUSE_MAX = 100_000
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = role_queue_name(LEADERBOARD_QUEUE_PREFIX, QueueRole.RANK)
CELERY_TASK_QUEUES = durable_queues(
    LEADERBOARD_QUEUE_PREFIX,
    LEADERBOARD_INGEST_PARTITIONS,
    LEADERBOARD_INGEST_DELIVERY_LIMIT,
    LEADERBOARD_INGEST_QUEUE_MAX_MESSAGES,
)
CELERY_TASK_ROUTES = {
    "tasks.ranking.*": {"queue": role_queue_name(LEADERBOARD_QUEUE_PREFIX, QueueRole.RANK)},
    "tasks.maintenance.*": {"queue": role_queue_name(LEADERBOARD_QUEUE_PREFIX, QueueRole.MAINTENANCE)},
    "tasks.cleanup.*": {"queue": role_queue_name(LEADERBOARD_QUEUE_PREFIX, QueueRole.MAINTENANCE)},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line says when, how bad and who: an ISO-8601 UTC time, the level, the logger and
    # the process (Celery workers log in Celery's own format, which has the time and level).
    "formatters": {
        "plain": {
            "()": "leaderboard_project.log_format.UtcFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s",
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LEADERBOARD_LOG_LEVEL", "INFO")},
    # One line per HTTP call of the simulator or tests is noise, not news.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# --- Citus ------------------------------------------------------------------------------
# Shards per distributed table, fixed when `manage.py distribute_tables` first runs
# (changing it later rewrites the tables with alter_distributed_table). A shard is the
# unit a rebalance moves, so the count caps how many workers can share the tables: 32
# (Citus's own default) lets the cluster grow to 32 workers, and today's 2 workers hold 16
# each, more than their cores, so multi-shard reads run in parallel on every core. More
# shards would make each multi-shard query (a top-N repair, a board delete) open more tasks.
LEADERBOARD_CITUS_SHARD_COUNT = env_int("LEADERBOARD_CITUS_SHARD_COUNT", 32)
