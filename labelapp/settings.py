"""Django settings, read from the environment with safe local defaults.

The same file runs the laptop demo (SQLite, DEBUG on) and production (PostgreSQL, DEBUG off,
secret key required); see README.md, "Configuration".
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    """Read a boolean variable; anything other than a clear yes/no is an error."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def envint(name: str, default: int) -> int:
    """Read an integer variable; a non-integer is an error."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def envlist(name: str, default: str = "") -> list[str]:
    """Read a comma-separated list."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def envsecret(name: str) -> str | None:
    """Read a secret from NAME, or from the file named by NAME_FILE (Docker secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name) or None


DEBUG = envbool("DJANGO_DEBUG", True)

SECRET_KEY = envsecret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off")
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "labelapp",
    "rlhf_worker",  # management commands only (bootstrap_model, run_worker); no torch on import
    "axes",  # login throttling (see AXES_* below)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "labelapp.middleware.DatabaseUnavailableMiddleware",  # database down: 503, not 500
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

ROOT_URLCONF = "labelapp.urls"
WSGI_APPLICATION = "labelapp.wsgi.application"

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
            ],
        },
    },
]

# SQLite for the local demo; PostgreSQL (or anything dj-database-url knows) via DATABASE_URL.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock at BEGIN, so two requests can never both read
    # the same free assignment and then both claim it (SQLite has no SELECT ... FOR UPDATE).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters bound by the server, and a statement run DB_PREPARE_THRESHOLD times on one
    # connection is prepared there: PostgreSQL then plans the labeler's hot statements once per
    # connection, not on every call (about 40% less of its CPU per loop, docs/benchmarks.md).
    # Behind a pooler in transaction mode (PgBouncer before 1.21), set DB_PREPARE_THRESHOLD=0.
    _prepare_threshold = envint("DB_PREPARE_THRESHOLD", 5)
    DATABASES["default"]["OPTIONS"] = {
        "server_side_binding": True,
        "prepare_threshold": _prepare_threshold if _prepare_threshold > 0 else None,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username from
# one IP address, that pair is refused (429, "too many attempts") for AXES_COOLOFF_MINUTES, even
# with the right password. Other users, and the same user from elsewhere, are unaffected. Axes
# must come first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a successful login forgets that pair's earlier failures
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Uploads and request bodies: a ranking is small; imports have their own limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024)

# Security headers. No inline script or style anywhere: everything comes from /static/.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 3600)
# Both only when every subdomain is served over HTTPS too.
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)

# Celery (the web process only sends tasks by name; rlhf_worker consumes them).
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ACKS_LATE = True  # a task is acknowledged when it finishes, not when it starts
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # a worker killed mid-task: the task is re-delivered
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a training job never waits behind another on one worker
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"rlhf_worker.tasks.run_step": {"queue": "gpu"}}
# Redis re-delivers an unacknowledged task after this many seconds: above the longest job.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 12 * 3600)
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The local demo's embedded broker when no Redis answers (`manage.py demo`): messages are
    # files in one folder that the site and the worker share. A message is taken when a worker
    # starts it, not when it finishes, so the sweeper (not the broker) re-sends a dead worker's.
    BROKER_DIR = Path(os.environ.get("BROKER_DIR", BASE_DIR / ".broker"))
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "control_folder": str(BROKER_DIR / "control"),
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A running step writes a heartbeat; one silent for this long is taken over by a re-delivery.
TRAINING_STALE_SECONDS = envint("TRAINING_STALE_SECONDS", 300)
# The sweeper (Celery beat, every SWEEP_INTERVAL_SECONDS) re-sends a step queued this long.
TRAINING_RESEND_SECONDS = envint("TRAINING_RESEND_SECONDS", 600)
CELERY_BEAT_SCHEDULE = {
    "resend-stuck-runs": {
        "task": "rlhf_worker.tasks.resend_stuck_runs",
        "schedule": envint("SWEEP_INTERVAL_SECONDS", 60),
    }
}
ARTIFACTS_DIR = Path(os.environ.get("ARTIFACTS_DIR", BASE_DIR / "artifacts"))
# Where `bootstrap_model` converts the shipped SmolLM2-135M-Instruct (the default policy v1).
SHIPPED_BASE_MODEL = str(ARTIFACTS_DIR / "smollm2-135m-instruct")
# Policy v1: the shipped model, or a hub id or local model directory of your own.
BASE_MODEL = os.environ.get("BASE_MODEL", SHIPPED_BASE_MODEL)
# The system turn every step puts before a prompt when the model has a chat template (the
# template's own default is never used); the same as rlhf_worker.training.format's default.
SYSTEM_PROMPT = os.environ.get("SYSTEM_PROMPT", "You are a helpful assistant.")
# torch threads in a worker: the cores this process may run on; more threads than free cores is
# much slower on a CPU, so a worker sharing its machine sets fewer.
TORCH_THREADS = envint("TORCH_THREADS", len(os.sched_getaffinity(0)))
# Training steps (reward, SFT, PPO, RLOO, GRPO, DPO) in this many processes: above 1, a worker
# runs each as `accelerate launch --num_processes N` (one process per GPU; gloo on a CPU host),
# each with TORCH_THREADS // N threads. 1 trains in the worker's process, as always.
TRAINING_PROCESSES = envint("TRAINING_PROCESSES", 1)
# An accelerate config file (DeepSpeed ZeRO, FSDP, several machines; docs/accelerate/): when set,
# every training step is launched with it, and it says how many processes.
ACCELERATE_CONFIG = os.environ.get("ACCELERATE_CONFIG", "")
# A launched step that runs longer than this is stopped and failed (0: no limit).
TRAINING_STEP_TIMEOUT = envint("TRAINING_STEP_TIMEOUT", 0)
# transformers, or vllm on a GPU host that has it (falls back to transformers elsewhere).
GENERATION_ENGINE = os.environ.get("GENERATION_ENGINE", "transformers")
# Uncertain rounds: how many times the round's size in prompts are answered and scored.
UNCERTAIN_POOL_FACTOR = envint("UNCERTAIN_POOL_FACTOR", 3)
# After each policy update, this many of the new version's answers its reward model likes most
# are ranked against its parent's in an audit round (0: no audits).
AUDIT_ANSWERS = envint("AUDIT_ANSWERS", 8)
# A version whose audit agrees with its reward model on fewer than this share of answers
# (percent) is flagged in the console.
AUDIT_MIN_AGREEMENT = envint("AUDIT_MIN_AGREEMENT_PERCENT", 60) / 100
# 1: a new version is not made current when it is trained; an admin makes it current (console,
# after its audit). 0 (default): it is current at once, as before; the audit only flags.
AUDIT_GATE = envbool("AUDIT_GATE", False)

# Labeling.
ASSIGNMENT_RESERVATION_SECONDS = envint("ASSIGNMENT_RESERVATION_SECONDS", 30 * 60)
DEMONSTRATION_MAX_CHARS = envint("DEMONSTRATION_MAX_CHARS", 10_000)
# Hidden repeats: this share (percent) of submitted rankings come back to the same labeler later,
# the answers in another A-D order (self-consistency and position bias); 0 turns them off.
REPEAT_PERCENT = envint("REPEAT_PERCENT", 5)
# A repeat is handed out first once this long has passed since the ranking it repeats (before
# that, only when the labeler has nothing else to do in the round).
REPEAT_DELAY_SECONDS = envint("REPEAT_DELAY_SECONDS", 10 * 60)
# Trust: this many judgements of full trust are counted on top of a labeler's record
# (services/trust.py), so that little evidence keeps trust near 1.
TRUST_PRIOR_PAIRS = envint("TRUST_PRIOR_PAIRS", 12)
# Imports (prompts, preference pairs): the largest file accepted, in bytes.
IMPORT_MAX_BYTES = envint("IMPORT_MAX_BYTES", 10 * 1024 * 1024)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
