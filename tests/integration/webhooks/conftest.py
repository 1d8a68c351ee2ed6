"""Webhook delivery against real parts: PostgreSQL (and SQLite), the SQL event log, a local HTTP receiver."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.apps import ADMIN_PASSWORD, TenantCtx, login, new_tenant
from tests.support.fixtures import app_on
from tests.support.receiver import Receiver

# Short clocks so that leases, refreshes and retries happen within a test's patience.
FAST = {
    "WEBHOOK_ALLOW_PRIVATE": True,
    "WEBHOOK_LEASE_TTL_S": 3.0,
    "WEBHOOK_REFRESH_S": 0.3,
    "WEBHOOK_FETCH_WAIT_S": 0.2,
    "WEBHOOK_TIMEOUT_S": 5.0,
    "WEBHOOK_RETRY_BUDGET_S": 2.0,
    "WEBHOOK_RETRY_TICK_S": 0.3,
}


@pytest.fixture(scope="session")
def pg_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """A migrated app on its own PostgreSQL database (SQL event log) for the session."""
    yield from app_on("postgresql", tmp_path_factory, **FAST)


@pytest.fixture(scope="session")
def sqlite_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """A migrated app on SQLite (SQL event log) for the session."""
    yield from app_on("sqlite", tmp_path_factory, **FAST)


@pytest.fixture(params=["postgresql"])
def app(request: pytest.FixtureRequest) -> Flask:
    """The app under test: PostgreSQL unless a test parametrizes ``app`` with "sqlite" too."""
    return request.getfixturevalue("pg_app" if request.param == "postgresql" else "sqlite_app")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A started local webhook receiver."""
    server = Receiver().start()
    yield server
    server.stop()


class Bus:
    """A tenant of the app under test, acting through the REST API, plus the runtime pieces a test needs."""

    def __init__(self, app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
        self.app, self.client, self.tenant = app, client, tenant
        self.subscriptions: list[str] = []

    def api(self, method: str, path: str, body: Any = None, status: int | None = None) -> Any:
        """Call the API as the tenant; check the status when given; the JSON answer."""
        resp = self.client.open(f"/api/v1{path}", method=method, json=body, headers=self.tenant.headers("all"))
        if status is not None:
            assert resp.status_code == status, resp.get_data(as_text=True)
        return resp.get_json(silent=True)

    def stream(self, partitions: int = 2) -> str:
        """A new stream; its name."""
        name = f"s-{uuid.uuid4().hex[:8]}"
        self.api("POST", "/streams", {"name": name, "partitions": partitions}, 201)
        return name

    def subscribe(self, stream: str, url: str, **fields: Any) -> dict[str, Any]:
        """A subscription (the create answer, with its secret)."""
        sub = self.api("POST", "/subscriptions", {"stream": stream, "url": url, **fields}, 201)
        self.subscriptions.append(sub["id"])
        return sub

    def publish(self, stream: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Publish events through the API; their positions."""
        return self.api("POST", f"/streams/{stream}/events", {"events": events}, 201)["results"]

    def deliveries(self, sub_id: str, status: str | None = None) -> list[dict[str, Any]]:
        """The subscription's deliveries (newest first) with attempts."""
        query = f"?limit=500&status={status}" if status else "?limit=500"
        return self.api("GET", f"/subscriptions/{sub_id}/deliveries{query}", status=200)["items"]

    def wait(self, check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        """Poll ``check`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def cleanup(self) -> None:
        """Delete the test's subscriptions so that later tests' dispatchers do not deliver to dead receivers."""
        for sub_id in self.subscriptions:
            self.client.delete(f"/api/v1/subscriptions/{sub_id}", headers=self.tenant.headers("all"))


def bus_on(app: Flask) -> Iterator[Bus]:
    """A fresh tenant on ``app``; its subscriptions are deleted afterwards (the body of a fixture)."""
    client = app.test_client()
    harness = Bus(app, client, new_tenant(client, login(client, "admin", ADMIN_PASSWORD)))
    yield harness
    harness.cleanup()


@pytest.fixture
def bus(app: Flask) -> Iterator[Bus]:
    """A fresh tenant on the app under test; its subscriptions are deleted afterwards."""
    yield from bus_on(app)


@contextmanager
def dispatcher(app: Flask, owner: str | None = None, **settings: Any) -> Iterator[Any]:
    """A running dispatcher (the consumer a worker runs), stopped afterwards; ``settings`` override its config."""
    from dataclasses import replace

    from app.services.dispatch import Dispatcher

    d = Dispatcher(app, owner=owner)
    if settings:
        d.config = replace(d.config, **settings)
    d.start()
    try:
        yield d
    finally:
        d.stop()


@contextmanager
def retry_beat(app: Flask, every_s: float = 0.2) -> Iterator[None]:
    """Run ``retry_due`` in a loop on a thread, as beat + a worker would."""
    from app.services.retries import retry_due

    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with app.app_context():
                retry_due(budget_s=1.0)
            stop.wait(every_s)

    thread = threading.Thread(target=loop, daemon=True, name="retry-beat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def event(etype: str = "order.created", key: str | None = None, **data: Any) -> dict[str, Any]:
    """A CloudEvent to publish, with a fresh id."""
    out: dict[str, Any] = {"id": str(uuid.uuid4()), "type": etype, "source": "/tests", "data": data or {"n": 1}}
    if key is not None:
        out["key"] = key
    return out
