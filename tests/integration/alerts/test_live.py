"""Alert changes reach the tenant's open consoles live on Socket.IO ``/metrics`` (through Redis, as from a worker).

A module of its own with its own app (SQLite and Redis behind a real HTTP server): Flask-SocketIO serves the
app it was bound to last, so this module builds its app and connects to it before evaluating.
"""
from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import socketio
from flask import Flask

from tests.integration.alerts.conftest import AlertBus
from tests.support.apps import ADMIN_PASSWORD, login, new_tenant
from tests.support.live_server import served_sqlite_app

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str]]:
    """A fresh app on SQLite with Redis as Socket.IO's message queue, served over HTTP."""
    with served_sqlite_app(tmp_path_factory.mktemp("alerts-live"), REDIS_URL=REDIS_URL) as served_app:
        yield served_app


class Watcher:
    """A Socket.IO client on /metrics collecting ``alert`` events."""

    def __init__(self, url: str, token: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("alert", self._on_alert, namespace="/metrics")
        self.sio.connect(url, namespaces=["/metrics"], auth={"token": token}, transports=["websocket"],
                         wait_timeout=10)

    def _on_alert(self, data: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(data)
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The first ``count`` events (AssertionError if they do not come)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.events) >= count, timeout):
                raise AssertionError(f"{len(self.events)} of {count} alert events: {self.events}")
            return list(self.events)


def test_console_sees_alerts_change_and_only_its_tenants(served: tuple[Flask, str]) -> None:
    app, url = served
    client = app.test_client()
    admin = login(client, "admin", ADMIN_PASSWORD)
    mine, theirs = AlertBus(app, client, new_tenant(client, admin)), AlertBus(app, client, new_tenant(client, admin))
    watcher = Watcher(url, mine.tenant.keys["all"])
    other = Watcher(url, theirs.tenant.keys["all"])
    try:
        for bus in (mine, theirs):
            stream = f"s-{uuid.uuid4().hex[:6]}"
            bus.api("POST", "/streams", {"name": stream, "partitions": 1}, 201)
            bus.publish(stream, 1)
            bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0, for_s=0)
        rule = mine.api("GET", "/alert-rules", status=200)["items"][0]
        assert mine.evaluate() == {"fired": 1}
        pending, firing = watcher.wait(2)
        assert (pending["state"], firing["state"]) == ("pending", "firing")
        assert firing["rule_id"] == rule["id"] and firing["value"] == 1.0 and firing["tenant"] == mine.tenant.slug
        assert theirs.evaluate() == {"fired": 1}
        assert [e["tenant"] for e in other.wait(2)] == [theirs.tenant.slug] * 2
        # Each console heard its own tenant's room only (the other's events came after, through the same queue).
        assert [e["tenant"] for e in watcher.events] == [mine.tenant.slug] * 2
    finally:
        watcher.sio.disconnect()
        other.sio.disconnect()
