"""Live-feed tests: a real server (threaded Werkzeug, WebSocket) and real python-socketio clients.

Flask-SocketIO serves the app it was bound to last, so each module builds its own app (module scope)
and runs all its socket tests against it before any other app is built.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import socketio

from tests.support.apps import TenantCtx

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WAIT_S = 15.0  # a generous bound for "arrives": what is measured here is what arrives, not how fast


class LiveClient:
    """A python-socketio client of ``/live`` that records every message it receives."""

    def __init__(self) -> None:
        self.sio = socketio.Client(reconnection=False)
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()
        for name in ("event", "events", "missed", "error"):
            self.sio.on(name, self._recorder(name), namespace="/live")

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(payload: Any) -> None:
            with self._cond:
                self.messages.append((name, payload))
                self._cond.notify_all()

        return record

    def connect(self, url: str, auth: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                transport: str = "websocket") -> LiveClient:
        """Connect to ``/live`` (raises socketio.exceptions.ConnectionError when refused)."""
        self.sio.connect(url, namespaces=["/live"], auth=auth, headers=headers or {}, transports=[transport],
                         wait_timeout=10)
        return self

    def subscribe(self, **request: Any) -> dict[str, Any]:
        """Emit ``subscribe`` and return its acknowledgement."""
        return self.sio.call("subscribe", request, namespace="/live", timeout=10)

    def unsubscribe(self, subscription: str) -> dict[str, Any]:
        """Emit ``unsubscribe`` and return its acknowledgement."""
        return self.sio.call("unsubscribe", {"subscription": subscription}, namespace="/live", timeout=10)

    def events(self, subscription: str | None = None) -> list[dict[str, Any]]:
        """Events received so far (from ``event`` and ``events`` messages), optionally of one subscription."""
        with self._cond:
            out: list[dict[str, Any]] = []
            for name, payload in self.messages:
                if subscription is not None and payload.get("subscription") != subscription:
                    continue
                if name == "event":
                    out.append(payload["event"])
                elif name == "events":
                    out.extend(payload["events"])
            return out

    def of(self, name: str) -> list[dict[str, Any]]:
        """Payloads of the messages called ``name``."""
        with self._cond:
            return [payload for n, payload in self.messages if n == name]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every message); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def wait_events(self, n: int, subscription: str | None = None, timeout: float = WAIT_S) -> list[dict[str, Any]]:
        """Wait for at least ``n`` events; returns those received."""
        self.wait_until(lambda: len(self.events(subscription)) >= n, timeout)
        return self.events(subscription)

    def close(self) -> None:
        """Disconnect."""
        if self.sio.connected:
            self.sio.disconnect()


def create_stream(url: str, tenant: TenantCtx, name: str, partitions: int = 1) -> None:
    """Create a stream through the REST API."""
    resp = httpx.post(f"{url}/api/v1/streams", headers=tenant.headers(), json={"name": name, "partitions": partitions})
    assert resp.status_code == 201, resp.text


def publish(url: str, tenant: TenantCtx, stream: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Publish through the REST API; returns the results (id, partition, offset)."""
    resp = httpx.post(f"{url}/api/v1/streams/{stream}/events", headers=tenant.headers("publish"),
                      json={"events": events}, timeout=60)
    assert resp.status_code == 201, resp.text
    return resp.json()["results"]


def numbered(n: int, start: int = 0, type_: str = "t.x", **extra: Any) -> list[dict[str, Any]]:
    """``n`` events whose data says their number."""
    return [{"type": type_, "data": {"n": start + i}, **extra} for i in range(n)]


def served_clients() -> Iterator[Callable[[], LiveClient]]:
    """A factory of LiveClients, all disconnected at the end."""
    made: list[LiveClient] = []

    def make() -> LiveClient:
        client = LiveClient()
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
