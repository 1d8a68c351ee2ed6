"""``/live`` across processes: two web processes on one PostgreSQL database and one Redis.

Events published through one process reach clients connected to the other. Both processes poll the log
only once a minute (``LIVE_POLL_S``), so what arrives within the test's wait came by the Redis wake-up.
"""
from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.integration.live.conftest import REDIS_URL, LiveClient, create_stream, numbered, publish, served_clients
from tests.support.apps import ADMIN_PASSWORD, TenantCtx, login, new_tenant
from tests.support.fixtures import app_on
from tests.support.live_server import live_server

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str, str]]:
    """This process's app and URL, and the URL of a second web process on the same database and Redis."""
    for application in app_on("postgresql", tmp_path_factory, REDIS_URL=REDIS_URL, LIVE_POLL_S=60.0):
        proc = subprocess.Popen([sys.executable, "-m", "tests.integration.live.serve",
                                 application.config["TEST_DATABASE_URL"], REDIS_URL],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            port = int(proc.stdout.readline())  # type: ignore[union-attr]
            with live_server(application) as url:
                yield application, url, f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def clients() -> Iterator[Callable[[], LiveClient]]:
    """LiveClients, disconnected after the test."""
    yield from served_clients()


def test_events_published_on_one_process_reach_clients_of_the_other(two_processes: tuple[Flask, str, str],
                                                                     clients: Callable[[], LiveClient]) -> None:
    app, here, there = two_processes
    tenant: TenantCtx = new_tenant(app.test_client(), login(app.test_client(), "admin", ADMIN_PASSWORD))
    stream = f"x-{uuid.uuid4().hex[:8]}"
    create_stream(here, tenant, stream, partitions=2)
    remote = clients().connect(there, auth={"token": tenant.keys["consume"]})
    local = clients().connect(here, auth={"token": tenant.keys["consume"]})
    remote_sub = remote.subscribe(stream=stream)["subscription"]
    local_sub = local.subscribe(stream=stream)["subscription"]

    publish(here, tenant, stream, numbered(5))  # through this process: the other one hears of it via Redis
    assert sorted(e["data"]["n"] for e in remote.wait_events(5, remote_sub)) == [0, 1, 2, 3, 4]

    publish(there, tenant, stream, numbered(3, start=5))  # and the other way round
    assert sorted(e["data"]["n"] for e in local.wait_events(8, local_sub)) == list(range(8))
    assert sorted(e["data"]["n"] for e in remote.wait_events(8, remote_sub)) == list(range(8))
    assert remote.of("missed") == [] and local.of("missed") == []
