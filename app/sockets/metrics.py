"""Socket.IO ``/metrics``: the console's live figures, one ``tick`` a second to each watched tenant's room."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask, request
from flask_socketio import Namespace, join_room

from app.services import dashboard
from app.services.live_metrics import live
from app.sockets.auth import reader_or_refuse
from app.sockets.watch import CredentialWatch

logger = logging.getLogger(__name__)

TICK_EVENT = "tick"
TICK_OFFSET_S = 0.15  # just after a second ends: its counts are in (the shared store is pushed every 0.5 s)


def room_of(tenant_id: int) -> str:
    """The room of a tenant's dashboards."""
    return f"tenant:{tenant_id}"


class MetricsNamespace(Namespace):
    """Authenticates dashboards, puts each in its tenant's room, and runs the tick loop while any is connected."""

    def __init__(self, namespace: str, app: Flask) -> None:
        super().__init__(namespace)
        self.app = app
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[int, str]] = {}  # sid -> (tenant id, slug), connected to this process
        self._running = False
        self.watch = CredentialWatch(self, app)  # a revoked key or removed user is cut off, not only refused

    def on_connect(self, auth: Any = None) -> bool:
        """Refuse anyone without read access; otherwise join the tenant's room and make sure the loop runs."""
        principal = reader_or_refuse(auth)
        sid = request.sid  # type: ignore[attr-defined]
        join_room(room_of(principal.tenant_id))
        with self._lock:
            self._clients[sid] = (principal.tenant_id, principal.tenant_slug)
            start = not self._running
            self._running = True
        if start:
            self.socketio.start_background_task(self._loop)
        self.watch.add(sid, principal)
        logger.debug("metrics: %s watches tenant %s", principal.actor, principal.tenant_slug)
        return True

    def on_disconnect(self, reason: Any = None) -> None:
        """Forget the client; the loop stops when none is left."""
        with self._lock:
            self._clients.pop(request.sid, None)  # type: ignore[attr-defined]
        self.watch.remove(request.sid)  # type: ignore[attr-defined]

    def watched(self) -> dict[int, str]:
        """Tenants (id -> slug) with a dashboard connected to this process."""
        with self._lock:
            return dict(self._clients.values())

    def _loop(self) -> None:
        logger.info("metrics: tick loop started")
        while True:
            now = time.time()
            self.socketio.sleep(1.0 - (now % 1.0) + TICK_OFFSET_S)
            tenants = self.watched()
            if not tenants:
                with self._lock:
                    if not self._clients:  # checked under the lock: a connect now starts a new loop
                        self._running = False
                        break
                continue
            try:
                self.emit_ticks(tenants, time.time())
            except Exception:  # noqa: BLE001 - the database or log away for a moment: try again next second
                logger.warning("metrics: tick failed", exc_info=True)
        logger.info("metrics: tick loop stopped (no dashboard connected)")

    def emit_ticks(self, tenants: dict[int, str], now: float) -> None:
        """Compute and emit one tick for each of ``tenants``."""
        with self.app.app_context():
            lm = live(self.app)
            mine = {tid: slug for tid, slug in tenants.items() if lm is None or lm.store.claim(tid, int(now))}
            payloads = dashboard.ticks(mine, now) if mine else {}
        for tid, payload in payloads.items():
            self.emit(TICK_EVENT, payload, room=room_of(tid))
