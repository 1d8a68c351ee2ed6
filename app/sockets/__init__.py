"""Socket.IO namespaces (``/metrics``, ``/live``), served by the web process next to the console and the API."""
from __future__ import annotations

import logging

from flask import Flask

logger = logging.getLogger(__name__)


def init_sockets(app: Flask) -> None:
    """Bind Socket.IO to ``app`` (threading mode; Redis as message queue when set) and register the namespaces."""
    from app.extensions import socketio
    from app.sockets.live import LiveNamespace
    from app.sockets.metrics import MetricsNamespace

    queue = app.config.get("REDIS_URL") or None
    # The singleton keeps the previous app's queue manager in its options; each app picks its own.
    socketio.server_options.pop("client_manager", None)
    # Same-origin only (the default): a page of another site cannot ride the console's session cookie.
    socketio.init_app(app, async_mode="threading", message_queue=queue, logger=False, engineio_logger=False)
    socketio.on_namespace(MetricsNamespace("/metrics", app))
    socketio.on_namespace(LiveNamespace("/live", app))
