"""``/live`` in the embedded mode: SQLite, no Redis; a publish wakes the tails of its own process."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from tests.integration.live.conftest import LiveClient, create_stream, numbered, publish, served_clients
from tests.support.apps import ADMIN_PASSWORD, login, new_tenant
from tests.support.fixtures import app_on
from tests.support.live_server import live_server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str]]:
    """An embedded-style app (SQLite, no Redis) that polls the log only once a minute."""
    for application in app_on("sqlite", tmp_path_factory, REDIS_URL=None, LIVE_POLL_S=60.0):
        with live_server(application) as url:
            yield application, url


@pytest.fixture
def clients() -> Iterator[Callable[[], LiveClient]]:
    """LiveClients, disconnected after the test."""
    yield from served_clients()


def test_sqlite_without_redis_delivers_on_publish(served: tuple[Flask, str],
                                                  clients: Callable[[], LiveClient]) -> None:
    app, url = served
    tenant = new_tenant(app.test_client(), login(app.test_client(), "admin", ADMIN_PASSWORD))
    stream = f"e-{uuid.uuid4().hex[:8]}"
    create_stream(url, tenant, stream, partitions=2)
    publish(url, tenant, stream, numbered(3))
    client = clients().connect(url, auth={"token": tenant.keys["consume"]})
    live = client.subscribe(stream=stream)["subscription"]
    history = client.subscribe(stream=stream, batch=True, **{"from": "earliest"})["subscription"]

    publish(url, tenant, stream, numbered(4, start=3))
    assert sorted(e["data"]["n"] for e in client.wait_events(4, live)) == [3, 4, 5, 6]
    assert sorted(e["data"]["n"] for e in client.wait_events(7, history)) == list(range(7))
