"""Application factory: the one place extensions are bound and views registered."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from config import BASE_DIR, INSTANCE_DIR, config_for, secret_key

logger = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Foreign keys for ON DELETE CASCADE, WAL so readers never block the writer.
    if type(dbapi_conn).__module__.startswith("sqlite3"):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()


def create_app(config_name: str | None = None, overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the web application (console, REST API, registry) for ``config_name``."""
    from flask_appbuilder import AppBuilder

    from app.extensions import csrf, db, migrate

    app = Flask(__name__, template_folder=str(BASE_DIR / "templates"), static_folder=str(BASE_DIR / "static"),
                instance_path=str(INSTANCE_DIR))
    app.config.from_object(config_for(config_name))
    if overrides:
        app.config.update(overrides)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key()
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        if not event.contains(Engine, "connect", _sqlite_pragmas):
            event.listen(Engine, "connect", _sqlite_pragmas)

    db.init_app(app)
    csrf.init_app(app)  # console forms; API blueprints are exempt (they take tokens, not cookies)
    migrate.init_app(app, db, directory=str(BASE_DIR / "migrations"), render_as_batch=True)

    from app.api.http import register_error_handlers

    register_error_handlers(app)
    with app.app_context():
        # One AppBuilder per app: FAB keeps its registered views on the instance, so a shared
        # singleton would leave a second app (tests, the worker) without routes.
        appbuilder = AppBuilder(update_perms=False)
        appbuilder.init_app(app, db.session)
        _register(appbuilder)

    from app.cli import register_cli

    register_cli(app)

    from workers import init_celery

    init_celery(app)  # app.extensions["celery"]: enqueue() sends tasks by name through it

    from app.services.live_metrics import init_app as init_live_metrics
    from app.sockets import init_sockets

    init_live_metrics(app)  # the console's live counters; their thread starts with the first count
    init_sockets(app)  # Socket.IO /metrics, with REDIS_URL as its message queue across processes

    from app.graphql import init_graphql

    init_graphql(app)  # /graphql: HTTP through Flask, its WebSocket upgrade through a WSGI middleware

    @app.teardown_appcontext
    def _remove_session(_exc: BaseException | None) -> None:
        db.session.remove()

    if app.config.get("GC_FREEZE_ON_START"):
        from app.runtime import tune_server_process

        # A server process: what is loaded now lives as long as it does.
        tune_server_process(int(app.config.get("GC_THRESHOLD") or 0))
    return app


def _register(appbuilder: Any) -> None:
    """Register every REST API and console view."""
    from app.api.admin import ApiKeysApi, TenantsApi, UsersApi
    from app.api.alerts import AlertRulesApi, AlertsApi
    from app.api.dead_letters import DeadLettersApi, ReplayJobsApi
    from app.api.events import EventsApi
    from app.api.groups import GroupsApi
    from app.api.ops import OpsApi
    from app.api.streams import StreamsApi
    from app.api.subscriptions import SubscriptionsApi
    from app.registry_api import register_registry_api
    from app.views.alerts import AlertsView
    from app.views.api_keys import ApiKeysView
    from app.views.audit import AuditView
    from app.views.dashboard import DashboardView
    from app.views.dead_letters import DeadLettersView, ReplayJobsView
    from app.views.events import EventsView
    from app.views.groups import GroupsView
    from app.views.schemas import SchemasView
    from app.views.streams import StreamsView
    from app.views.subscriptions import SubscriptionsView
    from app.views.tenant_switch import TenantSwitchView

    for api in (OpsApi, StreamsApi, EventsApi, GroupsApi, ApiKeysApi, TenantsApi, UsersApi, SubscriptionsApi,
                DeadLettersApi, ReplayJobsApi, AlertRulesApi, AlertsApi):
        appbuilder.add_api(api)
    appbuilder.add_view(DashboardView, "Dashboard", icon="fa-chart-line", category="Bus")
    appbuilder.add_view(StreamsView, "Streams", icon="fa-stream", category="Bus")
    appbuilder.add_view(EventsView, "Event browser", icon="fa-search", category="Bus")
    appbuilder.add_view(GroupsView, "Consumer groups", icon="fa-users", category="Bus")
    appbuilder.add_view(SubscriptionsView, "Subscriptions", icon="fa-paper-plane", category="Bus")
    appbuilder.add_view(DeadLettersView, "Dead letters", icon="fa-skull", category="Bus")
    appbuilder.add_view(ReplayJobsView, "Replay jobs", icon="fa-redo", category="Bus")
    appbuilder.add_view(AlertsView, "Alerts", icon="fa-bell", category="Bus")
    appbuilder.add_view(AuditView, "Audit log", icon="fa-list", category="Bus")
    appbuilder.add_view(ApiKeysView, "API keys", icon="fa-key", category="Bus")
    appbuilder.add_view(SchemasView, "Schemas", icon="fa-file-code", category="Bus")
    appbuilder.add_view_no_menu(TenantSwitchView)  # the navbar's switcher posts here
    register_registry_api()  # Confluent-compatible schema registry under /registry
