"""The application's event log: opened once per process on first use, from configuration."""
from __future__ import annotations

import threading

from flask import Flask, current_app

from app.bus.log import EventLog, open_log

_lock = threading.Lock()
_KEY = "event_log"


def open_app_log(app: Flask) -> EventLog:
    """Open (once) the log that EVENT_LOG_URL names for ``app``."""
    log = app.extensions.get(_KEY)
    if log is None:
        with _lock:
            log = app.extensions.get(_KEY)
            if log is None:
                url = app.config["EVENT_LOG_URL"]
                options = {}
                if url.startswith("kafka://"):
                    options["replication_factor"] = app.config["KAFKA_REPLICATION_FACTOR"]
                    # Partition counts cached for a second: a metadata request per append cost ~1 ms.
                    options["metadata_ttl_s"] = app.config["KAFKA_METADATA_TTL_S"]
                log = open_log(url, app.config["SQLALCHEMY_DATABASE_URI"], **options)
                app.extensions[_KEY] = log
    return log


def log_shares_app_database(app: Flask) -> bool:
    """True when the event log lives in the app's own database (``EVENT_LOG_URL=sql``): one transaction can
    then write metadata and log state (a group's offsets) together."""
    return app.config["EVENT_LOG_URL"] == "sql"


def event_log() -> EventLog:
    """The current app's event log."""
    return open_app_log(current_app)  # type: ignore[arg-type]


def close_app_log(app: Flask) -> None:
    """Close the log (tests, shutdown)."""
    log = app.extensions.pop(_KEY, None)
    if log is not None:
        log.close()
