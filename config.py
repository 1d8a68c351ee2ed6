"""Configuration from the environment (12-factor). ``create_app`` picks one of these classes."""
from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_DIR", BASE_DIR / "instance"))


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in instance/ (embedded mode)."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = INSTANCE_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    import secrets

    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


_FAB_SECURITY_VIEWS = (
    "UserDBModelView|UserLDAPModelView|UserOAuthModelView|UserOIDModelView|UserRemoteUserModelView|"
    "RoleModelView|UserGroupModelView|PermissionModelView|ViewMenuModelView|PermissionViewModelView|"
    "UserStatsChartView|RegisterUserModelView|Security|List Users|List Roles|List Groups|"
    "User's Statistics|Base Permissions|Views/Menus|Permission on Views/Menus"
)
_BUS_VIEWS = rf"^(?!({_FAB_SECURITY_VIEWS})$).*"


class Config:
    """Defaults shared by every environment: the embedded single-machine bus."""

    APP_NAME = "APG Event Bus"
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'bus.db'}")
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    EVENT_LOG_URL = os.environ.get("EVENT_LOG_URL", "sql")
    KAFKA_REPLICATION_FACTOR = _int("KAFKA_REPLICATION_FACTOR", 1)
    KAFKA_METADATA_TTL_S = float(os.environ.get("KAFKA_METADATA_TTL_S", "1"))
    REDIS_URL = os.environ.get("REDIS_URL")  # absent: in-process
    ADMIN_PASSWORD = os.environ.get("ADMIN_PASSWORD")
    PORT = _int("PORT", 5000)

    # Flask-AppBuilder: permissions and tables are set up by `flask bus init` and Alembic, never on boot.
    FAB_CREATE_DB = False
    FAB_UPDATE_PERMS = False
    FAB_API_SWAGGER_UI = True
    FAB_ADD_SECURITY_API = False
    AUTH_TYPE = 1  # AUTH_DB
    AUTH_ROLE_ADMIN = "Admin"
    AUTH_ROLE_PUBLIC = "Public"
    # Audits console and API sign-ins (user.login / user.login_failed).
    FAB_SECURITY_MANAGER_CLASS = "app.security_manager.BusSecurityManager"
    # Console permissions; the API checks roles itself (app/security.py). The views are matched by a
    # regex that leaves out FAB's security views and menus: ".*" would hand Operators user and role
    # administration.
    FAB_ROLES = {
        "Operator": [[_BUS_VIEWS, "can_list"], [_BUS_VIEWS, "can_show"], [_BUS_VIEWS, "can_add"],
                     [_BUS_VIEWS, "can_edit"], [_BUS_VIEWS, "can_delete"], [_BUS_VIEWS, "can_get"],
                     [_BUS_VIEWS, "menu_access"]],
        "Viewer": [[_BUS_VIEWS, "can_list"], [_BUS_VIEWS, "can_show"], [_BUS_VIEWS, "can_get"],
                   [_BUS_VIEWS, "menu_access"]],
    }
    JWT_ACCESS_TOKEN_EXPIRES = _int("JWT_ACCESS_TOKEN_EXPIRES_S", 3600)
    WTF_CSRF_ENABLED = True

    # API limits (API.md): up to 10,000 events or 10 MiB a request.
    MAX_CONTENT_LENGTH = 10 * 1024 * 1024
    MAX_BATCH_EVENTS = 10_000
    MAX_JSON_DEPTH = 64
    MAX_PARTITIONS = 256
    IDEMPOTENCY_TTL_S = 24 * 3600
    FETCH_MAX = 10_000
    FETCH_MAX_WAIT_MS = 30_000

    # Webhooks (API.md "Subscriptions").
    WEBHOOK_ALLOW_PRIVATE = _bool("WEBHOOK_ALLOW_PRIVATE", True)
    WEBHOOK_TIMEOUT_S = float(os.environ.get("WEBHOOK_TIMEOUT_S", "15"))
    WEBHOOK_RETRY_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]
    WEBHOOK_RETRY_AFTER_MAX_S = _int("WEBHOOK_RETRY_AFTER_MAX_S", 3600)  # clamp of a receiver's Retry-After
    WEBHOOK_DISABLE_AFTER_S = _int("WEBHOOK_DISABLE_AFTER_S", 5 * 24 * 3600)  # failing with no success
    WEBHOOK_ROTATION_GRACE_S = _int("WEBHOOK_ROTATION_GRACE_S", 24 * 3600)
    WEBHOOK_MAX_IN_FLIGHT = _int("WEBHOOK_MAX_IN_FLIGHT", 1000)  # upper bound of a subscription's max_in_flight
    # Dispatcher: partition leases, batches, and the retry / replay tasks' slices of work.
    WEBHOOK_LEASE_TTL_S = float(os.environ.get("WEBHOOK_LEASE_TTL_S", "15"))
    WEBHOOK_REFRESH_S = float(os.environ.get("WEBHOOK_REFRESH_S", "2"))
    WEBHOOK_BATCH_SIZE = _int("WEBHOOK_BATCH_SIZE", 500)
    WEBHOOK_FETCH_WAIT_S = float(os.environ.get("WEBHOOK_FETCH_WAIT_S", "1"))
    WEBHOOK_RETRY_BATCH = _int("WEBHOOK_RETRY_BATCH", 200)
    WEBHOOK_RETRY_BUDGET_S = float(os.environ.get("WEBHOOK_RETRY_BUDGET_S", "20"))
    WEBHOOK_REPLAY_CHUNK = _int("WEBHOOK_REPLAY_CHUNK", 50)
    # Succeeded and discarded deliveries (and their attempts) older than this are purged by beat; 0: kept.
    DELIVERY_RETENTION_DAYS = _int("DELIVERY_RETENTION_DAYS", 30)
    WEBHOOK_DISPATCHER = _bool("WEBHOOK_DISPATCHER", True)  # False: this worker runs tasks only
    # Server processes freeze their startup objects out of the cyclic GC (app/runtime.py); off in tests.
    GC_FREEZE_ON_START = _bool("GC_FREEZE_ON_START", True)
    # ... and set the cyclic collector's first-generation threshold to this (0: Python's 700).
    GC_THRESHOLD = _int("GC_THRESHOLD", 50_000)
    # The dispatching worker's GIL switch interval (Python's default 0.005 s adds up to that per hand-over).
    WEBHOOK_SWITCH_INTERVAL_S = float(os.environ.get("WEBHOOK_SWITCH_INTERVAL_S", "0.001"))
    # A runner's recorder waits this long for more sent batches to merge into one recording transaction.
    WEBHOOK_RECORD_LINGER_S = float(os.environ.get("WEBHOOK_RECORD_LINGER_S", "0.2"))
    # Fernet key encrypting webhook secrets at rest; absent: derived from SECRET_KEY.
    WEBHOOK_SECRET_KEY = os.environ.get("WEBHOOK_SECRET_KEY")

    # Dashboard figures: per-minute roll-ups flushed every METRICS_FLUSH_S, kept METRICS_RETENTION_DAYS.
    METRICS_FLUSH_S = float(os.environ.get("METRICS_FLUSH_S", "10"))
    METRICS_RETENTION_DAYS = _int("METRICS_RETENTION_DAYS", 7)

    # Celery: Redis in production; the embedded default runs an in-process worker (workers/celery_app.py).
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
    # Run the subscription consumers (and beat's schedules) inside the web process: the embedded default.
    EMBEDDED_WORKERS = _bool("EMBEDDED_WORKERS", False)

    # GraphQL at /graphql (docs/graphql.md): limits every operation is checked against before it runs.
    GRAPHQL_MAX_DEPTH = _int("GRAPHQL_MAX_DEPTH", 10)
    GRAPHQL_MAX_COST = _int("GRAPHQL_MAX_COST", 10_000)  # objects an operation may return (limits multiplied)
    GRAPHQL_MAX_ALIASES = _int("GRAPHQL_MAX_ALIASES", 30)
    GRAPHQL_MAX_TOKENS = _int("GRAPHQL_MAX_TOKENS", 5_000)
    GRAPHQL_IDE = _bool("GRAPHQL_IDE", True)  # GraphiQL on GET /graphql from a browser
    GRAPHQL_WS_INIT_TIMEOUT_S = float(os.environ.get("GRAPHQL_WS_INIT_TIMEOUT_S", "10"))
    GRAPHQL_WS_MAX_OPERATIONS = _int("GRAPHQL_WS_MAX_OPERATIONS", 20)  # per WebSocket connection

    # Alerts (docs/alerts.md): evaluation every ALERT_EVAL_INTERVAL_S by beat; worker/beat heartbeats;
    # e-mail notifications through SMTP (no SMTP_HOST: e-mail targets are refused).
    ALERT_EVAL_INTERVAL_S = float(os.environ.get("ALERT_EVAL_INTERVAL_S", "30"))
    ALERT_HEARTBEAT_S = float(os.environ.get("ALERT_HEARTBEAT_S", "10"))
    ALERT_STREAM = os.environ.get("ALERT_STREAM", "bus.alerts")  # per tenant, created on demand
    SMTP_HOST = os.environ.get("SMTP_HOST")
    SMTP_PORT = _int("SMTP_PORT", 25)
    SMTP_USER = os.environ.get("SMTP_USER")
    SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD")
    SMTP_STARTTLS = _bool("SMTP_STARTTLS", False)
    SMTP_TIMEOUT_S = float(os.environ.get("SMTP_TIMEOUT_S", "15"))
    ALERT_EMAIL_FROM = os.environ.get("ALERT_EMAIL_FROM", "apg-bus@localhost")


class DevelopmentConfig(Config):
    """`make run`: embedded, everything in one process."""

    DEBUG = False


class TestingConfig(Config):
    """The test suite: callers pass DATABASE_URL / EVENT_LOG_URL overrides per test."""

    TESTING = True
    GC_FREEZE_ON_START = False  # one pytest process builds many apps; freezing would keep their garbage
    WTF_CSRF_ENABLED = False
    SECRET_KEY = "test-secret-key-not-for-production-use-0123456789"  # noqa: S105 (tests only)
    ADMIN_PASSWORD = "admin-test-password"  # noqa: S105 (tests only)


class ProductionConfig(Config):
    """Several processes on PostgreSQL, Kafka and Redis; private webhook targets refused."""

    WEBHOOK_ALLOW_PRIVATE = _bool("WEBHOOK_ALLOW_PRIVATE", False)
    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", True)


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_for(name: str | None = None) -> type[Config]:
    """The config class for APP_ENV (default: development, the embedded bus)."""
    return CONFIGS[(name or os.environ.get("APP_ENV") or "development").lower()]


def secret_key() -> str:
    """The SECRET_KEY, resolved lazily so importing config writes nothing."""
    return _secret_key()
