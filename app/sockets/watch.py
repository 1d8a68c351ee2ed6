"""Ends a namespace's connections whose credential lapsed (``app/services/credentials.py``), checked periodically."""
from __future__ import annotations

import logging
import threading
import time

from flask import Flask
from flask_socketio import Namespace

from app.security import Principal
from app.services import credentials
from app.services.dispatch_config import setting  # config, else the environment (12-factor)
from app.services.live_fanout import ERROR

logger = logging.getLogger(__name__)


class CredentialWatch:
    """The principals of one namespace's connections; every ``SOCKET_AUTH_RECHECK_S`` the lapsed ones are cut."""

    def __init__(self, namespace: Namespace, app: Flask) -> None:
        self.ns = namespace
        self.app = app
        self.interval_s = setting(app.config, "SOCKET_AUTH_RECHECK_S", credentials.DEFAULT_RECHECK_S, float)
        self._principals: dict[str, Principal] = {}
        self._lock = threading.Lock()
        self._started = False

    def add(self, sid: str, principal: Principal) -> None:
        """Watch a new connection (starts the checking loop on first use)."""
        with self._lock:
            self._principals[sid] = principal
            start, self._started = not self._started, True
        if start:
            self.ns.socketio.start_background_task(self._loop)

    def principal(self, sid: str) -> Principal:
        """The principal a connection was opened with (KeyError when it is not connected)."""
        with self._lock:
            return self._principals[sid]

    def remove(self, sid: str) -> None:
        """Forget a closed connection."""
        with self._lock:
            self._principals.pop(sid, None)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval_s)
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the database may be away: try again next round
                logger.warning("%s: credential re-check failed", self.ns.namespace, exc_info=True)

    def check(self) -> list[str]:
        """Disconnect the connections whose credential lapsed, telling them why; their sids."""
        with self._lock:
            snapshot = dict(self._principals)
        if not snapshot:
            return []
        with self.app.app_context():
            gone = credentials.lapsed(snapshot)
        for sid in gone:
            logger.info("%s: %s's credential lapsed; disconnecting", self.ns.namespace, snapshot[sid].actor)
            self.ns.socketio.emit(ERROR, {"error": {"code": "credentials_revoked", "message":
                                  "the credential this connection was opened with was revoked", "details": {}}},
                                  to=sid, namespace=self.ns.namespace, ignore_queue=True)
            self.ns.socketio.server.disconnect(sid, namespace=self.ns.namespace)
            self.remove(sid)
        return sorted(gone)
