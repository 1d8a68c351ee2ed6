"""Socket.IO ``/metrics`` on a real server: who may connect, and ticks that follow what is published, per tenant.

The app runs as in production with several processes: Redis carries the per-second counts and Socket.IO's
rooms (the end-to-end tests cover the embedded, in-process mode). A module of its own: Flask-SocketIO
serves the app it was bound to last, so this module builds its app and connects to it before any other.
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import socketio
from flask import Flask

from tests.integration.api.test_auth import PASSWORD, make_user, new_key
from tests.support.apps import ADMIN_PASSWORD, TenantCtx, login, new_tenant
from tests.support.live_server import served_sqlite_app

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str]]:
    """A fresh app on SQLite and Redis behind a real HTTP server (threaded Werkzeug, WebSocket via simple-websocket)."""
    with served_sqlite_app(tmp_path_factory.mktemp("dash-socket"), REDIS_URL=REDIS_URL,
                           SOCKET_AUTH_RECHECK_S=0.3) as served_app:
        yield served_app


@pytest.fixture(scope="module")
def tenants(served: tuple[Flask, str]) -> tuple[TenantCtx, TenantCtx, str]:
    """Two tenants and an admin JWT."""
    client = served[0].test_client()
    token = login(client, "admin", ADMIN_PASSWORD)
    return new_tenant(client, token), new_tenant(client, token), token


async def _watch(url: str, seconds: float, auth: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 publish: Any = None, transport: str = "websocket") -> list[dict[str, Any]]:
    """Connect to /metrics, optionally publish once connected, and collect ticks for ``seconds``."""
    ticks: list[dict[str, Any]] = []
    sio = socketio.AsyncClient(reconnection=False)
    sio.on("tick", lambda payload: ticks.append(payload), namespace="/metrics")
    await sio.connect(url, namespaces=["/metrics"], auth=auth, headers=headers or {}, transports=[transport],
                      wait_timeout=10)
    try:
        if publish is not None:
            await asyncio.to_thread(publish)
        await asyncio.sleep(seconds)
    finally:
        await sio.disconnect()
    return ticks


def _publish(url: str, tenant: TenantCtx, stream: str, n: int) -> float:
    resp = httpx.post(f"{url}/api/v1/streams/{stream}/events", headers=tenant.headers("publish"),
                      json={"events": [{"type": "t.x", "data": {"i": i}} for i in range(n)]})
    assert resp.status_code == 201, resp.text
    return time.time()


def _events_in(ticks: list[dict[str, Any]], stream: str) -> dict[int, float]:
    seen: dict[int, float] = {}
    for tick in ticks:
        for t, n in tick["rates"]["events_in"].get(stream, []):
            seen[t] = n  # later ticks re-send a second: the newest count of it wins
    return seen


def test_ticks_follow_published_events_within_seconds(served: tuple[Flask, str],
                                                      tenants: tuple[TenantCtx, TenantCtx, str]) -> None:
    _, url = served
    mine, theirs, _ = tenants
    stream, their_stream = f"s-{uuid.uuid4().hex[:6]}", f"x-{uuid.uuid4().hex[:6]}"
    for ctx, name in ((mine, stream), (theirs, their_stream)):
        assert httpx.post(f"{url}/api/v1/streams", headers=ctx.headers(), json={"name": name}).status_code == 201

    def publish() -> None:
        _publish(url, mine, stream, 7)
        _publish(url, theirs, their_stream, 2)

    ticks = asyncio.run(_watch(url, 3.0, auth={"token": mine.keys["all"]}, publish=publish))

    assert len(ticks) >= 2  # one a second
    assert all(t["tenant"] == mine.slug for t in ticks)
    assert sum(_events_in(ticks, stream).values()) == 7
    assert all(their_stream not in t["rates"]["events_in"] for t in ticks)
    assert ticks[-1]["gauges"]["dead_letters"] == {"": [[ticks[-1]["until"], 0.0]]}


def test_console_session_and_jwt_connect_polling_too(served: tuple[Flask, str],
                                                      tenants: tuple[TenantCtx, TenantCtx, str]) -> None:
    app, url = served
    mine, theirs, admin_token = tenants
    username = make_user(app.test_client(), admin_token, "Viewer", [mine.slug])
    with httpx.Client(base_url=url) as browser:
        assert browser.post("/login/", data={"username": username, "password": PASSWORD}).status_code == 302
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    ticks = asyncio.run(_watch(url, 1.5, headers={"Cookie": cookie}, transport="polling"))
    assert ticks and ticks[-1]["tenant"] == mine.slug

    # A JWT names its tenant in auth (an Admin may watch any).
    ticks = asyncio.run(_watch(url, 1.5, auth={"token": admin_token, "tenant": theirs.slug}))
    assert ticks and ticks[-1]["tenant"] == theirs.slug


@pytest.mark.parametrize("auth", [None, {"token": "ebk_not-a-key"}, {"token": "not.a.jwt"}])
def test_connections_without_valid_credentials_are_refused(served: tuple[Flask, str], auth: Any) -> None:
    _, url = served
    with pytest.raises(socketio.exceptions.ConnectionError):
        asyncio.run(_watch(url, 0.1, auth=auth))


def test_a_user_cannot_watch_a_tenant_not_theirs(served: tuple[Flask, str],
                                                 tenants: tuple[TenantCtx, TenantCtx, str]) -> None:
    app, url = served
    mine, theirs, admin_token = tenants
    username = make_user(app.test_client(), admin_token, "Operator", [mine.slug])
    token = login(app.test_client(), username, PASSWORD)
    with pytest.raises(socketio.exceptions.ConnectionError):
        asyncio.run(_watch(url, 0.1, auth={"token": token, "tenant": theirs.slug}))


def test_counts_of_other_processes_reach_the_dashboard(served: tuple[Flask, str],
                                                       tenants: tuple[TenantCtx, TenantCtx, str]) -> None:
    from app.services.live_metrics import DELIVERIES_OK, LiveMetrics

    app, url = served
    mine, _, _ = tenants
    worker = LiveMetrics(app)  # what a worker process keeps: its own counters, pushed to Redis
    worker.count(mine.slug, DELIVERIES_OK, "orders", 4)
    try:
        ticks = asyncio.run(_watch(url, 2.5, auth={"token": mine.keys["all"]}))
    finally:
        worker.stop()
    delivered = {t: n for tick in ticks for t, n in tick["rates"]["deliveries_ok"].get("orders", [])}
    assert sum(delivered.values()) == 4


def test_a_revoked_key_ends_its_dashboard_connection(served: tuple[Flask, str],
                                                     tenants: tuple[TenantCtx, TenantCtx, str]) -> None:
    # /metrics re-checks its connections' credentials like /live (every 0.3 s here): a key revoked while its
    # dashboard is open gets credentials_revoked and is disconnected; another key's dashboard stays.
    app, url = served
    mine = tenants[0]
    key = new_key(app.test_client(), mine, ["consume"])

    async def scenario() -> tuple[list[Any], bool, bool]:
        errors: list[Any] = []
        doomed, kept = socketio.AsyncClient(reconnection=False), socketio.AsyncClient(reconnection=False)
        doomed.on("error", lambda payload: errors.append(payload), namespace="/metrics")
        await doomed.connect(url, namespaces=["/metrics"], auth={"token": key["key"]}, transports=["websocket"],
                             wait_timeout=10)
        await kept.connect(url, namespaces=["/metrics"], auth={"token": mine.keys["all"]}, transports=["websocket"],
                           wait_timeout=10)
        try:
            resp = await asyncio.to_thread(httpx.delete, f"{url}/api/v1/api-keys/{key['id']}",
                                           headers=mine.headers("all"))
            assert resp.status_code == 204, resp.text
            deadline = time.monotonic() + 15
            while doomed.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return errors, doomed.connected, kept.connected
        finally:
            for client in (doomed, kept):
                if client.connected:
                    await client.disconnect()

    errors, doomed_open, kept_open = asyncio.run(scenario())
    assert not doomed_open and kept_open
    assert [e["error"]["code"] for e in errors] == ["credentials_revoked"]
