"""Alerts against real parts: PostgreSQL, the SQL event log, a local webhook receiver, a local SMTP server (aiosmtpd).

Evaluation is driven by calling the evaluator with a chosen ``now``: no test waits for beat's 30 s.
"""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient

from tests.integration.webhooks.conftest import FAST
from tests.support.apps import ADMIN_PASSWORD, TenantCtx, login, new_tenant
from tests.support.fixtures import app_on
from tests.support.receiver import Receiver
from tests.support.services import free_port


class Inbox:
    """An aiosmtpd handler keeping every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.refuse = 0  # answer this many messages with a temporary failure first
        self.refused = 0
        self._cond = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        with self._cond:
            if self.refuse > 0:
                self.refuse -= 1
                self.refused += 1
                return "451 Requested action aborted: try again later"
            self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
            self._cond.notify_all()
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        """Messages addressed to ``address``."""
        with self._cond:
            return [m for rcpts, m in self.messages if address in rcpts]


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on loopback for the session."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture(scope="session")
def app(smtp: tuple[Inbox, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """A migrated app on its own PostgreSQL database with SMTP pointed at the local server."""
    yield from app_on("postgresql", tmp_path_factory, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1],
                      ALERT_EMAIL_FROM="bus@test.invalid", **FAST)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A started local webhook receiver."""
    server = Receiver().start()
    yield server
    server.stop()


class AlertBus:
    """A fresh tenant acting through the REST API, and the evaluator run for that tenant at a chosen time."""

    def __init__(self, app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
        self.app, self.client, self.tenant = app, client, tenant
        from app.extensions import db
        from app.models import Tenant

        with app.app_context():
            self.tenant_id = db.session.query(Tenant.id).filter(Tenant.slug == tenant.slug).scalar()

    def api(self, method: str, path: str, body: Any = None, status: int | None = None,
            scope: str = "all") -> Any:
        """Call the API as the tenant; check the status when given; the JSON answer."""
        resp = self.client.open(f"/api/v1{path}", method=method, json=body, headers=self.tenant.headers(scope))
        if status is not None:
            assert resp.status_code == status, resp.get_data(as_text=True)
        return resp.get_json(silent=True)

    def stream(self, partitions: int = 1) -> str:
        """A new stream; its name."""
        name = f"s-{uuid.uuid4().hex[:8]}"
        self.api("POST", "/streams", {"name": name, "partitions": partitions}, 201)
        return name

    def publish(self, stream: str, n: int = 1) -> None:
        """Publish ``n`` events."""
        events = [{"type": "order.created", "data": {"n": i}} for i in range(n)]
        self.api("POST", f"/streams/{stream}/events", {"events": events}, 201)

    def rule(self, kind: str, target: dict[str, Any] | None = None, threshold: float | None = 0, **fields: Any
             ) -> dict[str, Any]:
        """Create a rule (for_s 0 unless given); the create answer."""
        body: dict[str, Any] = {"name": f"r-{uuid.uuid4().hex[:8]}", "kind": kind, "target": target or {},
                                "for_s": 0, **fields}
        if threshold is not None:
            body["threshold"] = threshold
        return self.api("POST", "/alert-rules", body, 201)

    def evaluate(self, now: datetime | None = None) -> dict[str, int]:
        """Run the evaluator for this tenant's rules at ``now``."""
        from app.services.alert_eval import evaluate

        with self.app.app_context():
            return evaluate(now=now, tenant_id=self.tenant_id)

    def state(self, rule_id: str) -> str:
        """The rule's state as the API shows it (ok, pending, firing)."""
        return self.api("GET", f"/alert-rules/{rule_id}", status=200)["state"]

    def alerts(self, state: str | None = None) -> list[dict[str, Any]]:
        """The tenant's alerts (of one state)."""
        query = f"?state={state}" if state else ""
        return self.api("GET", f"/alerts{query}", status=200)["items"]


@pytest.fixture
def bus(app: Flask) -> AlertBus:
    """A fresh tenant on the app under test."""
    client = app.test_client()
    return AlertBus(app, client, new_tenant(client, login(client, "admin", ADMIN_PASSWORD)))
