"""Extension singletons, unbound: ``create_app`` binds them. Imports nothing from ``app``.

Flask-AppBuilder is the exception: it keeps registered views on its instance, so ``create_app``
makes one per app and it is reached as ``current_app.appbuilder``.
"""
from __future__ import annotations

from celery import Celery
from flask_appbuilder.models.sqla.base import SQLA
from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_wtf.csrf import CSRFProtect

db = SQLA()
migrate = Migrate()
csrf = CSRFProtect()
# Bound by ``app.sockets.init_sockets`` (threading mode; Redis as message queue when REDIS_URL is set).
socketio = SocketIO()
# Bound by ``workers.init_celery`` (called from create_app); tasks run inside the bound app's context.
celery = Celery("apg_bus", task_cls="workers:ContextTask", set_as_current=False)
