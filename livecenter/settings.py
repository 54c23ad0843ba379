"""LiveCenter settings.

One code path for both topologies (DESIGN.md): with no environment the product
runs embedded (SQLite, in-memory channel layer, Celery on kombu's filesystem
transport); `DATABASE_URL` switches to PostgreSQL and `REDIS_URL` to Redis for
the Celery broker and the Channels layer.
"""

import hashlib
import os
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
# Everything the product writes at run time: database, broker queue, keys.
DATA_DIR = Path(os.environ.get("LIVECENTER_DATA_DIR", BASE_DIR / "var"))
# Private to the user the product runs as: it holds the database, the secret
# key and the broker's queue. One made by an older version is narrowed too.
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
try:
    DATA_DIR.chmod(0o700)
except OSError:  # not ours (an operator's shared directory): leave it as they set it
    pass


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept."""
    if os.environ.get("DJANGO_SECRET_KEY"):
        return os.environ["DJANGO_SECRET_KEY"]
    path = DATA_DIR / "secret_key"
    try:
        # Created 0600, never chmod-ed after; O_EXCL: of several processes
        # starting at once (test workers, runall's children) one writes the
        # key and the others read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(50))
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.02)  # another process created the file and is writing it
    raise RuntimeError(f"{path} is empty")


SECRET_KEY = _secret_key()
DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Login throttling and API tokens stored hashed (accounts.models.ApiToken),
    # in place of DRF's authtoken app; its drf_create_token command is ours.
    "accounts",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "livecenter",
    "domains",
    "streams",
    "mediajobs",
    "callbacks",
    "nodes",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Outermost of those that touch the database (sessions, auth, views).
    "livecenter.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "livecenter.urls"
ASGI_APPLICATION = "livecenter.asgi.application"
WSGI_APPLICATION = None

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
                "monitoring.context_processors.open_alarms",
            ],
            "builtins": ["livecenter.templatetags.console"],
        },
    },
]

# --- Database -----------------------------------------------------------------
# SQLite by default; the path can be moved (the Celery worker a test starts
# must open the same file as the test itself).
SQLITE_PATH = Path(os.environ.get("LIVECENTER_SQLITE_PATH", DATA_DIR / "db.sqlite3"))
if not os.environ.get("DATABASE_URL") and not SQLITE_PATH.exists():
    # Made empty (a valid SQLite database) and private before SQLite opens
    # it; livecenter/apps.py narrows one made by an older version. A write-
    # ahead log left by a database that was deleted would be replayed into
    # the new one: it goes first.
    SQLITE_PATH.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in (Path(f"{SQLITE_PATH}-wal"), Path(f"{SQLITE_PATH}-shm")):
        stale.unlink(missing_ok=True)
    os.close(os.open(SQLITE_PATH, os.O_WRONLY | os.O_CREAT, 0o600))
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
    # Fail fast when PostgreSQL is unreachable (issue 11): a connect gives up
    # after this many seconds, and a dead peer is noticed by TCP keepalives
    # within about 10 s, not the kernel's two hours.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        connect_timeout=int(os.environ.get("LIVECENTER_DB_CONNECT_TIMEOUT_SECONDS", 3)),
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
    )
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("LIVECENTER_TEST_DATABASE_NAME", "test_livecenter")}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            # Tests run against a file, not memory, so that a worker process
            # started by a test sees the same rows.
            "TEST": {"NAME": os.environ.get("LIVECENTER_SQLITE_TEST_PATH", str(DATA_DIR / "test.sqlite3"))},
            # Write-ahead logging: readers (the console's pages, the policy
            # cache) never hold up a writer (the node's event sink, 40 media
            # jobs beating every second), which in the default rollback
            # journal they do, to "database is locked" (bench/soak).
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and Channels layer ---------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")


def _kombu_redis_url(url: str) -> str:
    """kombu's name for a Redis URL: redis-py's Unix socket form
    (`unix:///run/redis/redis.sock?db=2`) is `redis+socket://` there, its
    database the `virtual_host`; a TCP URL is the same in both."""
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    db = parse_qs(parts.query).get("db", ["0"])[0]
    return f"redis+socket://{parts.path}?virtual_host={db}"


if REDIS_URL:
    CELERY_BROKER_URL = _kombu_redis_url(REDIS_URL)
    # Redis unreachable (issue 11): connects give up in 3 s and a read in 10 s
    # (longer than channels_redis's 5 s BZPOPMIN), so nothing waits forever on
    # a silent peer; callers retry (nodes/control.py, Celery's own retry).
    # Keepalive is a TCP option: redis-py refuses it for a Unix socket.
    _REDIS_HOST = {"address": REDIS_URL, "socket_connect_timeout": 3, "socket_timeout": 10}
    if urlsplit(REDIS_URL).scheme != "unix":
        _REDIS_HOST["socket_keepalive"] = True
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [_REDIS_HOST]}}
    }
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 3, "socket_timeout": 10, "socket_keepalive": True}
    CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker waits out a Redis outage, however long
else:
    _broker_dir = DATA_DIR / "celery-broker"
    (_broker_dir / "out").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "control").mkdir(parents=True, exist_ok=True)
    # kombu's filesystem transport, writing each message whole (livecenter/lib/fsbroker.py).
    CELERY_BROKER_URL = "livecenterfs://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # A worker lists the queue folder this often (kombu's default is 1 s):
        # a recording starts that much sooner after its stream goes live.
        "polling_interval": 0.2,
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "domains.recheck-pending-cnames": {
        "task": "domains.recheck_pending_cnames",
        "schedule": float(os.environ.get("LIVECENTER_CNAME_RECHECK_SECONDS", 300)),
    },
    "monitoring.prune-samples": {
        "task": "monitoring.prune_samples",
        "schedule": float(os.environ.get("LIVECENTER_MONITORING_PRUNE_SECONDS", 60)),
    },
    # Callback messages lost with a broker restart are sent again, old deliveries dropped (callbacks/tasks.py).
    "callbacks.sweep": {
        "task": "callbacks.sweep",
        "schedule": float(os.environ.get("LIVECENTER_CALLBACKS_OVERDUE_SECONDS", 60)),
        "options": {"queue": os.environ.get("LIVECENTER_CALLBACKS_QUEUE", "celery"), "expires": 60},
    },
    # Media jobs whose worker died start again elsewhere (mediajobs/tasks.py).
    "streams.recover-media-jobs": {
        "task": "streams.recover_media_jobs",
        "schedule": float(os.environ.get("LIVECENTER_JOB_RECOVER_SECONDS", 1)),
        "options": {"queue": os.environ.get("LIVECENTER_MEDIA_QUEUE", "media"), "expires": 10},
    },
    # Alarm rules over the recent samples (monitoring/alarms.py); a late run is dropped, the next one sees the same.
    "monitoring.evaluate-alarms": {
        "task": "monitoring.evaluate_alarms",
        "schedule": float(os.environ.get("LIVECENTER_ALARMS_EVALUATE_SECONDS", 5)),
        "options": {"expires": 10},
    },
}

# --- Auth and API ---------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "domains:list"
LOGOUT_REDIRECT_URL = "login"
# Login throttling (accounts/throttle.py), shared by every console process
# through the database. An account name is locked after this many failures
# with no quiet window between them; an address (an IPv6 /64) after more, as
# an office or a NAT puts many users behind one address.
LIVECENTER_LOGIN_ACCOUNT_FAILURES = int(os.environ.get("LIVECENTER_LOGIN_ACCOUNT_FAILURES", 5))
LIVECENTER_LOGIN_ADDRESS_FAILURES = int(os.environ.get("LIVECENTER_LOGIN_ADDRESS_FAILURES", 20))
LIVECENTER_LOGIN_WINDOW_SECONDS = float(os.environ.get("LIVECENTER_LOGIN_WINDOW_SECONDS", 15 * 60))
# The first lock lasts this long, each further one twice as long, up to the max.
LIVECENTER_LOGIN_LOCK_SECONDS = float(os.environ.get("LIVECENTER_LOGIN_LOCK_SECONDS", 60))
LIVECENTER_LOGIN_LOCK_MAX_SECONDS = float(os.environ.get("LIVECENTER_LOGIN_LOCK_MAX_SECONDS", 60 * 60))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an anonymous request gets 401 with WWW-Authenticate.
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LiveCenter API",
    "DESCRIPTION": "Domains, URL signing and the URL generator of a self-hosted live-streaming cloud.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Static files -----------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Front-end libraries come from npm (package.json); only their dist folders
# are exposed, never node_modules whole.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/bootstrap", BASE_DIR / "node_modules" / "bootstrap" / "dist"),
    ("vendor/mpegts", BASE_DIR / "node_modules" / "mpegts.js" / "dist"),
    ("vendor/hls", BASE_DIR / "node_modules" / "hls.js" / "dist"),
    ("vendor/uplot", BASE_DIR / "node_modules" / "uplot" / "dist"),
]
WHITENOISE_USE_FINDERS = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- LiveCenter ---------------------------------------------------------------------
# The quota of the seed: 20 domain names per account.
LIVECENTER_MAX_DOMAINS_PER_OPERATOR = int(os.environ.get("LIVECENTER_MAX_DOMAINS_PER_OPERATOR", 20))
# Every domain gets `{domain}.{zone}` as its CNAME target; the operator points
# this zone at the media nodes.
LIVECENTER_CNAME_ZONE = os.environ.get("LIVECENTER_CNAME_ZONE", "cname.livecenter.example")
# "host" or "host:port" of the DNS server used by the CNAME check; empty means
# the system's resolvers (/etc/resolv.conf).
LIVECENTER_DNS_RESOLVER = os.environ.get("LIVECENTER_DNS_RESOLVER", "")
LIVECENTER_DNS_TIMEOUT_SECONDS = float(os.environ.get("LIVECENTER_DNS_TIMEOUT_SECONDS", 3))
# Ports the generated URLs name (DESIGN.md, Addresses).
LIVECENTER_RTMP_PORT = int(os.environ.get("LIVECENTER_RTMP_PORT", 1935))
LIVECENTER_HTTP_PORT = int(os.environ.get("LIVECENTER_HTTP_PORT", 8080))
LIVECENTER_SRT_PORT = int(os.environ.get("LIVECENTER_SRT_PORT", 1105))
# For domains with HTTPS on (issue 15): https:// and rtmps:// URLs name these.
LIVECENTER_HTTPS_PORT = int(os.environ.get("LIVECENTER_HTTPS_PORT", 443))
LIVECENTER_RTMPS_PORT = int(os.environ.get("LIVECENTER_RTMPS_PORT", 1936))
# Secrets at rest (signing keys, certificate private keys) are encrypted with
# a key derived from this value; it defaults to SECRET_KEY.
LIVECENTER_ENCRYPTION_KEY = os.environ.get("LIVECENTER_ENCRYPTION_KEY", SECRET_KEY)
# Console and API listen address for `manage.py runall`.
LIVECENTER_CONSOLE_HOST = os.environ.get("LIVECENTER_CONSOLE_HOST", "127.0.0.1")
LIVECENTER_CONSOLE_PORT = int(os.environ.get("LIVECENTER_CONSOLE_PORT", 8000))
# The console over HTTPS (issue 15): `runall` serves it with this certificate
# and key (PEM files) when both are set; or, behind a reverse proxy that ends
# TLS, LIVECENTER_CONSOLE_BEHIND_PROXY says so. Either way the session and
# CSRF cookies are sent over HTTPS only. The proxy's X-Forwarded-Proto is
# trusted by uvicorn (its proxy headers, on by default) from the addresses in
# FORWARDED_ALLOW_IPS (loopback by default) only, and the request's scheme
# comes from there: no SECURE_PROXY_SSL_HEADER, with which Django would trust
# the header from any client (tests/test_runall_tls.py).
LIVECENTER_CONSOLE_TLS_CERT_FILE = os.environ.get("LIVECENTER_CONSOLE_TLS_CERT_FILE", "")
LIVECENTER_CONSOLE_TLS_KEY_FILE = os.environ.get("LIVECENTER_CONSOLE_TLS_KEY_FILE", "")
LIVECENTER_CONSOLE_BEHIND_PROXY = _env_bool("LIVECENTER_CONSOLE_BEHIND_PROXY", False)
if LIVECENTER_CONSOLE_BEHIND_PROXY or LIVECENTER_CONSOLE_TLS_CERT_FILE:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Signed URLs are logged without their auth_key (livecenter/media/redact.py).
    "filters": {"redact": {"()": "livecenter.media.redact.RedactAuthKeyFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LIVECENTER_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- media node -------------------------------------------------------------------
# The engine's listening sockets; the ports the generated URLs name are above.
LIVECENTER_MEDIA_HOST = os.environ.get("LIVECENTER_MEDIA_HOST", "0.0.0.0")
LIVECENTER_MEDIA_RTMP_PORT = int(os.environ.get("LIVECENTER_MEDIA_RTMP_PORT", LIVECENTER_RTMP_PORT))
LIVECENTER_MEDIA_HTTP_PORT = int(os.environ.get("LIVECENTER_MEDIA_HTTP_PORT", LIVECENTER_HTTP_PORT))
# SRT ingest (UDP) on the media node; 0 picks a free port (tests).
LIVECENTER_MEDIA_SRT_PORT = int(os.environ.get("LIVECENTER_MEDIA_SRT_PORT", LIVECENTER_SRT_PORT))
# HTTPS and RTMPS listeners (livecenter/media/tls.py), each with the
# certificate of the domain a client names. Off unless set (443 and 1936 in
# production, where LIVECENTER_HTTPS_PORT and LIVECENTER_RTMPS_PORT say the same).
LIVECENTER_MEDIA_HTTPS_PORT = (
    int(os.environ["LIVECENTER_MEDIA_HTTPS_PORT"]) if os.environ.get("LIVECENTER_MEDIA_HTTPS_PORT") else None
)
LIVECENTER_MEDIA_RTMPS_PORT = (
    int(os.environ["LIVECENTER_MEDIA_RTMPS_PORT"]) if os.environ.get("LIVECENTER_MEDIA_RTMPS_PORT") else None
)
# The node's own certificate and key (PEM files), served to a TLS client that
# names no domain with HTTPS on; unset: such a handshake is refused.
LIVECENTER_MEDIA_TLS_CERT_FILE = os.environ.get("LIVECENTER_MEDIA_TLS_CERT_FILE", "")
LIVECENTER_MEDIA_TLS_KEY_FILE = os.environ.get("LIVECENTER_MEDIA_TLS_KEY_FILE", "")
# A TLS connection's ClientHello and handshake must end within this; at most
# this many handshakes are under way, and start a second, per TLS port
# (tls.py says why).
LIVECENTER_MEDIA_TLS_HANDSHAKE_SECONDS = float(os.environ.get("LIVECENTER_MEDIA_TLS_HANDSHAKE_SECONDS", 10))
LIVECENTER_MEDIA_MAX_PENDING_TLS_HANDSHAKES = int(os.environ.get("LIVECENTER_MEDIA_MAX_PENDING_TLS_HANDSHAKES", 4096))
LIVECENTER_MEDIA_MAX_TLS_HANDSHAKES_PER_SECOND = float(
    os.environ.get("LIVECENTER_MEDIA_MAX_TLS_HANDSHAKES_PER_SECOND", 1000)
)
# `runall` runs the media node in the console's process unless this is off
# (scaled topology: run `manage.py medianode` instead).
LIVECENTER_MEDIA_EMBEDDED = _env_bool("LIVECENTER_MEDIA_EMBEDDED", True)
LIVECENTER_NODE_ID = os.environ.get("LIVECENTER_NODE_ID", "")
# Its place in the cluster (issue 14; `manage.py medianode --role --region`):
# "center" or "edge", and the live center region it serves (a domain's live
# center, domains.models.LiveCenter). Unset: a node alone, center and edge of
# every region, as `make run`'s embedded one. The address other nodes reach
# it on is LIVECENTER_MEDIA_INTERNAL_HOST (below).
LIVECENTER_NODE_ROLE = os.environ.get("LIVECENTER_NODE_ROLE", "")
LIVECENTER_NODE_REGION = os.environ.get("LIVECENTER_NODE_REGION", "")
# A node down for longer than this is gone for good: the Nodes list forgets
# it (it registers again if it ever comes back). A day: a machine being
# repaired or redeployed stays listed, down, meanwhile.
LIVECENTER_NODE_FORGET_SECONDS = float(os.environ.get("LIVECENTER_NODE_FORGET_SECONDS", 24 * 3600))
# How long a viewer of a stream that is not live yet waits before a 404.
LIVECENTER_PLAY_WAIT_SECONDS = float(os.environ.get("LIVECENTER_PLAY_WAIT_SECONDS", 5))
# An edge drops a stream it pulls from a center this long after its last viewer left.
LIVECENTER_EDGE_PULL_IDLE_SECONDS = float(os.environ.get("LIVECENTER_EDGE_PULL_IDLE_SECONDS", 10))
# The addresses RTS (WebRTC) offers browsers as ICE candidates, comma-separated:
# the node's public addresses. Empty: the media host when it is loopback, else
# every interface but loopback.
# Keep RTS audio and video in sync in the browser at the cost of latency
# (the video waits for the audio's jitter buffer); off by default.
LIVECENTER_RTS_LIP_SYNC = _env_bool("LIVECENTER_RTS_LIP_SYNC", False)
# Send RTS viewers' media by the node's fast path (one loop per frame for
# all viewers) rather than one aiortc sender per viewer (bench/README.md).
LIVECENTER_RTS_FAST_PATH = _env_bool("LIVECENTER_RTS_FAST_PATH", True)
# The Opus frames RTS viewers get of AAC audio, in ms: 20, 40 or 60. Longer
# frames are fewer packets for the node to send each viewer (a large audience
# on one node) and that much more audio latency.
LIVECENTER_RTS_OPUS_FRAME_MS = int(os.environ.get("LIVECENTER_RTS_OPUS_FRAME_MS", 20))
# The media node's full garbage collections every this many seconds on its
# own timer, the startup's objects frozen out of them (each a pause of the
# node's loop: hundreds of ms with hundreds of WebRTC viewers); 0: CPython's
# own schedule, when its allocation counts call for one.
LIVECENTER_MEDIA_GC_FULL_SECONDS = float(os.environ.get("LIVECENTER_MEDIA_GC_FULL_SECONDS", 0))
# A WHIP publisher (a browser's encoder makes keyframes only when asked) is
# asked for one when it has sent none for this long; 0: only when needed.
LIVECENTER_WHIP_KEYFRAME_SECONDS = float(os.environ.get("LIVECENTER_WHIP_KEYFRAME_SECONDS", 2))
LIVECENTER_RTS_ICE_ADDRESSES = tuple(
    a.strip() for a in os.environ.get("LIVECENTER_RTS_ICE_ADDRESSES", "").split(",") if a.strip()
)
# Egress (Mbit/s, each viewer at its stream's bitrate, an RTS viewer 30
# times that) past which the node refuses new viewers with 503 / the RTMP
# refusal, so the ones it has keep their frame rate (livecenter/media/capacity.py;
# the default is measured in bench/README.md). 0: no limit.
LIVECENTER_MEDIA_MAX_EGRESS_MBPS = float(os.environ.get("LIVECENTER_MEDIA_MAX_EGRESS_MBPS", 5000))
# The event loop's median lateness (ms, over 3 s) past which the node also
# refuses new viewers: it is behind on the ones it has (capacity.LoopLagGauge).
# 0: not watched.
LIVECENTER_MEDIA_MAX_LOOP_LAG_MS = float(os.environ.get("LIVECENTER_MEDIA_MAX_LOOP_LAG_MS", 250))
# The C allocator under churn (livecenter/media/allocator.py; glibc only):
# blocks of this many bytes or more are mapped apart from the heap (0:
# glibc's own moving threshold), and the heaps' free pages are given back
# every so many seconds (0: never).
LIVECENTER_MEDIA_MALLOC_MMAP_THRESHOLD_BYTES = int(
    os.environ.get("LIVECENTER_MEDIA_MALLOC_MMAP_THRESHOLD_BYTES", 256 * 1024)
)
LIVECENTER_MEDIA_MALLOC_TRIM_SECONDS = float(os.environ.get("LIVECENTER_MEDIA_MALLOC_TRIM_SECONDS", 60))
# The key media workers sign their reads with so a node at capacity still
# serves them; every node and worker must share it (by default derived from
# SECRET_KEY, which they share anyway).
LIVECENTER_MEDIA_WORKER_KEY = os.environ.get(
    "LIVECENTER_MEDIA_WORKER_KEY", hashlib.sha256(f"livecenter-media-worker:{SECRET_KEY}".encode()).hexdigest()
)
# The key nodes sign what they relay and pull from each other with
# (livecenter/media/edge.py: a center admits an edge's relay by it instead
# of the domain's signature); every node must share it.
LIVECENTER_CLUSTER_KEY = os.environ.get(
    "LIVECENTER_CLUSTER_KEY", hashlib.sha256(f"livecenter-cluster:{SECRET_KEY}".encode()).hexdigest()
)
# How an edge relays its publishers' streams to a center: rtmp or srt, and
# the SRT latency it asks for (NodeConfig in livecenter/media/node.py says why 1000 ms).
LIVECENTER_RELAY_PROTOCOL = os.environ.get("LIVECENTER_RELAY_PROTOCOL", "rtmp")
LIVECENTER_RELAY_SRT_LATENCY_MS = int(os.environ.get("LIVECENTER_RELAY_SRT_LATENCY_MS", "1000"))

# What a peer may hold of the node before it has shown a signature, and how
# many connections the node takes (issue 11; NodeConfig in
# livecenter/media/node.py says why each default). RTMP: the whole handshake
# must end within HANDSHAKE_SECONDS of accept, and publish or play must start
# within SESSION_START_SECONDS; incomplete messages are bounded per
# connection before and after it asks to publish, and for the node.
LIVECENTER_MEDIA_HANDSHAKE_SECONDS = float(os.environ.get("LIVECENTER_MEDIA_HANDSHAKE_SECONDS", 10))
LIVECENTER_MEDIA_SESSION_START_SECONDS = float(os.environ.get("LIVECENTER_MEDIA_SESSION_START_SECONDS", 20))
LIVECENTER_MEDIA_RTMP_BUFFER_BYTES_BEFORE_PUBLISH = int(
    os.environ.get("LIVECENTER_MEDIA_RTMP_BUFFER_BYTES_BEFORE_PUBLISH", 16 * 1024)
)
LIVECENTER_MEDIA_RTMP_BUFFER_BYTES = int(os.environ.get("LIVECENTER_MEDIA_RTMP_BUFFER_BYTES", 9 * 1024 * 1024))
LIVECENTER_MEDIA_RTMP_NODE_BUFFER_BYTES = int(
    os.environ.get("LIVECENTER_MEDIA_RTMP_NODE_BUFFER_BYTES", 256 * 1024 * 1024)
)
# Connections (RTMP and HTTP together) per node and per source address; the
# node's cap is also kept RESERVE_DESCRIPTORS below the descriptor limit.
LIVECENTER_MEDIA_MAX_CONNECTIONS = int(os.environ.get("LIVECENTER_MEDIA_MAX_CONNECTIONS", 20000))
LIVECENTER_MEDIA_MAX_CONNECTIONS_PER_ADDRESS = int(os.environ.get("LIVECENTER_MEDIA_MAX_CONNECTIONS_PER_ADDRESS", 1000))
LIVECENTER_MEDIA_RESERVE_DESCRIPTORS = int(os.environ.get("LIVECENTER_MEDIA_RESERVE_DESCRIPTORS", 256))
# HTTP connections on the media port are persistent: closed after IDLE_SECONDS
# without a request, and after MAX_REQUESTS requests (NodeConfig says why).
LIVECENTER_MEDIA_HTTP_IDLE_SECONDS = float(os.environ.get("LIVECENTER_MEDIA_HTTP_IDLE_SECONDS", 15))
LIVECENTER_MEDIA_HTTP_MAX_REQUESTS = int(os.environ.get("LIVECENTER_MEDIA_HTTP_MAX_REQUESTS", 1000))

# --- streams ------------------------------------------------------------------------
# How long the engine's database policy (nodes/bridge.py) keeps a domain's
# settings and a stream's block, and how many it keeps. A forbid does not
# wait for it: it drops the stream's entry at once.
LIVECENTER_POLICY_CACHE_SECONDS = float(os.environ.get("LIVECENTER_POLICY_CACHE_SECONDS", 2))
LIVECENTER_POLICY_CACHE_ENTRIES = int(os.environ.get("LIVECENTER_POLICY_CACHE_ENTRIES", 4096))
# While the database is unreachable the policy serves its last good answers
# up to this old; a domain it has no answer for is refused "policy
# unavailable" (HTTP 503).
LIVECENTER_POLICY_STALE_SECONDS = float(os.environ.get("LIVECENTER_POLICY_STALE_SECONDS", 300))
# After a failed query, the node's policy and sinks leave the database alone
# this long before trying again (livecenter/outage.py).
LIVECENTER_DB_RETRY_SECONDS = float(os.environ.get("LIVECENTER_DB_RETRY_SECONDS", 2))
# Publish and unpublish events kept for replay while the database is down.
LIVECENTER_OUTAGE_EVENTS_MAX = int(os.environ.get("LIVECENTER_OUTAGE_EVENTS_MAX", 10000))
# A forbid without a resume time blocks for six months, as ForbidLiveStream
# does without ResumeTime (aliyun_spec.md 3.10).
LIVECENTER_FORBID_DEFAULT_DAYS = int(os.environ.get("LIVECENTER_FORBID_DEFAULT_DAYS", 183))
# Forbidden streams per operator; the reference's limit is 10,000.
LIVECENTER_MAX_BLOCKED_STREAMS = int(os.environ.get("LIVECENTER_MAX_BLOCKED_STREAMS", 10000))

# --- media workers (issue 7; mediajobs/tasks.py) ---------------------------------------
# The Celery queue of transcodes, recordings and snapshots; `make run`'s
# worker takes it with the default queue, a scaled worker is started with
# `-Q media` (or both).
LIVECENTER_MEDIA_QUEUE = os.environ.get("LIVECENTER_MEDIA_QUEUE", "media")
# Threads of `runall`'s worker: each running transcode, recording or
# snapshot series holds one while its stream is live.
LIVECENTER_WORKER_CONCURRENCY = int(os.environ.get("LIVECENTER_WORKER_CONCURRENCY", 8))
# How workers and other media nodes reach this machine's media node (its
# listening host, or loopback when it listens on every address); `medianode
# --advertise` sets it too.
LIVECENTER_MEDIA_INTERNAL_HOST = os.environ.get("LIVECENTER_MEDIA_INTERNAL_HOST", "")
# A running job beats its row this often; one silent for STALE seconds is
# taken as dead (kill -9, a lost machine) and started again on another worker.
LIVECENTER_JOB_HEARTBEAT_SECONDS = float(os.environ.get("LIVECENTER_JOB_HEARTBEAT_SECONDS", 1))
LIVECENTER_JOB_STALE_SECONDS = float(os.environ.get("LIVECENTER_JOB_STALE_SECONDS", 4))
# An on-demand rendition nobody watched for this long stops.
LIVECENTER_TRANSCODE_IDLE_SECONDS = float(os.environ.get("LIVECENTER_TRANSCODE_IDLE_SECONDS", 60))
LIVECENTER_RECORDINGS_DIR = Path(os.environ.get("LIVECENTER_RECORDINGS_DIR", DATA_DIR / "recordings"))
LIVECENTER_SNAPSHOTS_DIR = Path(os.environ.get("LIVECENTER_SNAPSHOTS_DIR", DATA_DIR / "snapshots"))

# --- player -------------------------------------------------------------------------
# Where the web player (/player/), Go live, the calibrator and the URL
# generator's direct URLs send clients (domains/direct.py):
#   "auto" (the default): a domain's own name where it resolves on this
#     machine and is not marked local; else the media node's address (the
#     address the browser reached the console at, 127.0.0.1 without one) with
#     `&domain=<domain>` (the engine's documented fallback);
#   "" (empty): always the domain's own name (DNS in place);
#   a host (such as 127.0.0.1 or 192.0.2.10): always that host, with `domain=`.
LIVECENTER_PLAYER_MEDIA_HOST = os.environ.get("LIVECENTER_PLAYER_MEDIA_HOST", "auto")
# How long "auto" waits for the system's resolver (getaddrinfo) on a page
# that hands out URLs, and how long it keeps an answer: a resolver that
# hangs costs a page at most this, once a name (domains/lib/resolve.py).
LIVECENTER_RESOLVE_TIMEOUT_SECONDS = float(os.environ.get("LIVECENTER_RESOLVE_TIMEOUT_SECONDS", 1))
LIVECENTER_RESOLVE_CACHE_SECONDS = float(os.environ.get("LIVECENTER_RESOLVE_CACHE_SECONDS", 60))

# --- monitoring -------------------------------------------------------------------------
# Per-second stream samples are kept this long, then pruned by the worker in
# batches of LIVECENTER_MONITORING_PRUNE_BATCH rows (at most
# LIVECENTER_MONITORING_PRUNE_MAX_BATCHES a run), so one run stays short.
# Samples kept for writing later while the database is down: 20 streams for
# 30 minutes (a sample is a few hundred bytes).
LIVECENTER_MONITORING_BUFFER_SAMPLES = int(os.environ.get("LIVECENTER_MONITORING_BUFFER_SAMPLES", 36000))
LIVECENTER_MONITORING_RETENTION_HOURS = float(os.environ.get("LIVECENTER_MONITORING_RETENTION_HOURS", 24))
LIVECENTER_MONITORING_PRUNE_BATCH = int(os.environ.get("LIVECENTER_MONITORING_PRUNE_BATCH", 5000))
LIVECENTER_MONITORING_PRUNE_MAX_BATCHES = int(os.environ.get("LIVECENTER_MONITORING_PRUNE_MAX_BATCHES", 20))
# Viewer telemetry (issue 19; livecenter/media/beacon.py): a CSV file of
# `CIDR,region` lines that names a viewer's region from its address, the
# longest matching prefix winning, with no outside service. Empty: the
# built-in table, loopback and private ranges as "local", the rest "unknown".
LIVECENTER_VIEWER_REGIONS = os.environ.get("LIVECENTER_VIEWER_REGIONS", "")
# How often a media node hands what the players' beacons said to the
# database (0: the node refuses beacons).
LIVECENTER_BEACON_FLUSH_SECONDS = float(os.environ.get("LIVECENTER_BEACON_FLUSH_SECONDS", 10))

# --- callbacks (issue 16; callbacks/, livecenter/media/webhooks.py) ---------------------------
# Loopback and private addresses (RFC 1918, ULA, ...) as callback receivers:
# off, so a callback cannot reach into the product's network; on for a
# receiver on the same machine or network (and the tests). Link-local
# addresses (169.254.0.0/16, the cloud metadata service) and the product's
# own ports on its own addresses are refused either way.
LIVECENTER_CALLBACKS_ALLOW_PRIVATE = _env_bool("LIVECENTER_CALLBACKS_ALLOW_PRIVATE", False)
# More ports no callback may reach on this product's own addresses (besides
# the console's and the media node's), comma-separated: a Redis, a database.
LIVECENTER_CALLBACKS_REFUSED_PORTS = tuple(
    int(p) for p in os.environ.get("LIVECENTER_CALLBACKS_REFUSED_PORTS", "5432,6379").split(",") if p.strip()
)
# One event delivery's time (connect, send, answer); receivers should answer at once and work later.
LIVECENTER_CALLBACKS_TIMEOUT_SECONDS = float(os.environ.get("LIVECENTER_CALLBACKS_TIMEOUT_SECONDS", 10))
# Retries: the first after BACKOFF seconds, then each twice as long, at most
# MAX_BACKOFF, for RETRY_HOURS from the event (ApsaraVideo Live tries 5
# times a second apart; a receiver down for a night still gets its events).
LIVECENTER_CALLBACKS_BACKOFF_SECONDS = float(os.environ.get("LIVECENTER_CALLBACKS_BACKOFF_SECONDS", 10))
LIVECENTER_CALLBACKS_MAX_BACKOFF_SECONDS = float(os.environ.get("LIVECENTER_CALLBACKS_MAX_BACKOFF_SECONDS", 3600))
LIVECENTER_CALLBACKS_RETRY_HOURS = float(os.environ.get("LIVECENTER_CALLBACKS_RETRY_HOURS", 24))
# How long the node keeps a publish authorisation callback's answer for a stream and client address.
LIVECENTER_CALLBACKS_HOOK_CACHE_SECONDS = float(os.environ.get("LIVECENTER_CALLBACKS_HOOK_CACHE_SECONDS", 30))
# Finished deliveries (and their attempts) are kept this long for the console and the API.
LIVECENTER_CALLBACKS_KEEP_DAYS = float(os.environ.get("LIVECENTER_CALLBACKS_KEEP_DAYS", 7))
# The Celery queue of deliveries: Celery's default, which `make run`'s worker takes.
LIVECENTER_CALLBACKS_QUEUE = os.environ.get("LIVECENTER_CALLBACKS_QUEUE", "celery")
# The console as receivers reach it: recording.ready's download_url and
# snapshot.taken's image_url start with it (they need the operator's API token).
LIVECENTER_CALLBACKS_CONSOLE_URL = os.environ.get(
    "LIVECENTER_CALLBACKS_CONSOLE_URL", f"http://{LIVECENTER_CONSOLE_HOST}:{LIVECENTER_CONSOLE_PORT}"
)

# --- usage statistics (monitoring/usage.py) ------------------------------------------------
# Rolled up from the samples by the worker every LIVECENTER_USAGE_ROLLUP_SECONDS
# (at most LIVECENTER_USAGE_ROLLUP_BATCH samples a run; the next run goes on).
# 5-minute, hour and day rollups are kept LIVECENTER_USAGE_RETENTION_DAYS,
# 1-minute ones LIVECENTER_USAGE_MINUTE_RETENTION_DAYS.
LIVECENTER_USAGE_ROLLUP_SECONDS = float(os.environ.get("LIVECENTER_USAGE_ROLLUP_SECONDS", 30))
LIVECENTER_USAGE_ROLLUP_BATCH = int(os.environ.get("LIVECENTER_USAGE_ROLLUP_BATCH", 20000))
LIVECENTER_USAGE_RETENTION_DAYS = float(os.environ.get("LIVECENTER_USAGE_RETENTION_DAYS", 90))
LIVECENTER_USAGE_MINUTE_RETENTION_DAYS = float(os.environ.get("LIVECENTER_USAGE_MINUTE_RETENTION_DAYS", 7))
CELERY_BEAT_SCHEDULE["monitoring.roll-up-usage"] = {
    "task": "monitoring.roll_up_usage",
    "schedule": LIVECENTER_USAGE_ROLLUP_SECONDS,
    "options": {"expires": LIVECENTER_USAGE_ROLLUP_SECONDS},
}
