"""Socket.IO ``/live``: tail streams. In: ``subscribe``, ``unsubscribe``. Out: ``event(s)``, ``missed``, ``error``.

The work is in ``app/services/live_fanout.py`` (feeds, rooms, slow clients) and ``live_feed.py`` (tails);
this module authenticates, maps errors to API.md's shape and gives the fan-out Socket.IO to talk through.
Emits skip the message queue (``ignore_queue``): every process reads the event log for its own clients,
so an event sent through Redis as well would arrive twice.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, request
from flask_socketio import Namespace

from app.services.dispatch_config import setting  # config, else the environment (12-factor)
from app.services.errors import ServiceError
from app.services.live_fanout import DEFAULT_COALESCE_S, ERROR, FanOut
from app.sockets.auth import reader_or_refuse
from app.sockets.watch import CredentialWatch

logger = logging.getLogger(__name__)


class SocketTransport:
    """The fan-out's view of Socket.IO: local emits to rooms and clients, and each client's send backlog."""

    def __init__(self, namespace: Namespace) -> None:
        self.ns = namespace

    def emit(self, message: str, payload: Any, room: str, skip: list[str]) -> None:
        """Send to a room's members except ``skip`` (encoded once for all of them)."""
        self.ns.socketio.emit(message, payload, to=room, skip_sid=skip or None, namespace=self.ns.namespace,
                              ignore_queue=True)

    def send(self, sid: str, message: str, payload: Any) -> None:
        """Send to one client."""
        self.ns.socketio.emit(message, payload, to=sid, namespace=self.ns.namespace, ignore_queue=True)

    def backlog(self, sid: str) -> int:
        """Engine.IO packets queued for the client and not yet written to its connection."""
        server = self.ns.socketio.server
        try:
            eio_sid = server.manager.eio_sid_from_sid(sid, self.ns.namespace)
            sock = server.eio.sockets.get(eio_sid) if eio_sid else None
        except Exception:  # noqa: BLE001 - gone meanwhile
            return 0
        return sock.queue.qsize() if sock is not None else 0

    def join(self, sid: str, room: str) -> None:
        """Put the client in a room."""
        self.ns.socketio.server.enter_room(sid, room, namespace=self.ns.namespace)

    def leave(self, sid: str, room: str) -> None:
        """Take the client out of a room."""
        self.ns.socketio.server.leave_room(sid, room, namespace=self.ns.namespace)

    def spawn(self, target: Callable[[], None]) -> None:
        """A background thread (threading mode)."""
        self.ns.socketio.start_background_task(target)


def _error(exc: ServiceError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}


class LiveNamespace(Namespace):
    """Authenticated connections, each with any number of subscriptions."""

    def __init__(self, namespace: str, app: Flask) -> None:
        super().__init__(namespace)
        self.app = app
        coalesce_ms = setting(app.config, "LIVE_COALESCE_MS", DEFAULT_COALESCE_S * 1000, float)
        self.fanout = FanOut(SocketTransport(self), coalesce_s=coalesce_ms / 1000)
        # Each connection's principal; a revoked key or removed user is cut off, not only refused at connect.
        self.watch = CredentialWatch(self, app)

    def on_connect(self, auth: Any = None) -> bool:
        """Refuse anyone without read access (401/403 codes in the refusal's data)."""
        principal = reader_or_refuse(auth)
        self.watch.add(request.sid, principal)  # type: ignore[attr-defined]
        return True

    def on_disconnect(self, reason: Any = None) -> None:
        """Drop the client's subscriptions."""
        sid = request.sid  # type: ignore[attr-defined]
        self.watch.remove(sid)
        self.fanout.disconnect(sid)

    def on_subscribe(self, data: Any = None) -> dict[str, Any]:
        """Start a subscription; the ack (and, on failure, an ``error`` message) says how it went."""
        sid = request.sid  # type: ignore[attr-defined]
        try:
            return self.fanout.subscribe(self.watch.principal(sid), sid, data)
        except ServiceError as exc:
            body = _error(exc)
            self.fanout.transport.send(sid, ERROR, body)
            return body

    def on_unsubscribe(self, data: Any = None) -> dict[str, Any]:
        """End one subscription: ``{"subscription": id}``."""
        sid = request.sid  # type: ignore[attr-defined]
        try:
            return self.fanout.unsubscribe(sid, data)
        except ServiceError as exc:
            body = _error(exc)
            self.fanout.transport.send(sid, ERROR, body)
            return body
