"""A real HTTP server around a test app, for clients that speak HTTP themselves (Confluent's, httpx)."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import make_server


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port in a thread; yields the base URL ``http://127.0.0.1:PORT``."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@contextmanager
def served_sqlite_app(folder: Path, **overrides: Any) -> Iterator[tuple[Flask, str]]:
    """A fresh migrated app on a SQLite file in ``folder``, served by ``live_server``; closed afterwards."""
    from app.extensions import db
    from app.services.event_log import close_app_log
    from tests.support.apps import build_app

    application = build_app(f"sqlite:///{folder / 'bus.db'}", **overrides)
    with live_server(application) as url:
        yield application, url
    close_app_log(application)
    with application.app_context():
        db.engine.dispose()
