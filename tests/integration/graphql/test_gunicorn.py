"""The production server: ``gunicorn --threads`` (gthread) serves the GraphQL WebSocket on the app's own port.

The other modules run Werkzeug (what ``make run`` uses); gunicorn hands the socket over differently
(``gunicorn.socket``, StopIteration to end the request), so it gets a test of its own. Two worker threads
only: connections that did not give their thread back would leave the later ones hanging.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask
from gql import Client

from tests.integration.graphql.conftest import Api
from tests.integration.graphql.test_subscription import collect, transport

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gunicorn_url(gql_app: Flask, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``gunicorn -w 1 --threads 2 'app:create_app()'`` on the package's database."""
    port = _free_port()
    env = {**os.environ, "APP_ENV": "testing", "DATABASE_URL": gql_app.config["TEST_DATABASE_URL"],
           "EVENT_LOG_URL": "sql", "INSTANCE_DIR": str(tmp_path_factory.mktemp("gunicorn"))}
    log = tmp_path_factory.mktemp("gunicorn-log") / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-w", "1", "--threads", "2",
                                 "-b", f"127.0.0.1:{port}", "app:create_app()"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_subscriptions_over_gunicorn_threads(api: Api, gunicorn_url: str) -> None:
    served = Api(gunicorn_url, api.tenant)
    stream = served.stream(partitions=1)

    async def one_round(n: int) -> list[dict]:
        async with Client(transport=transport(gunicorn_url, api.tenant.keys["consume"])) as session:
            task = asyncio.ensure_future(collect(session, {"s": stream, "from": str(n)}, until=lambda got: bool(got)))
            await asyncio.to_thread(served.publish, stream, [{"type": "round", "data": {"n": n}}])
            return await task

    # Four connections one after the other on two threads: each gave its thread back.
    for n in range(4):
        got = asyncio.run(one_round(n))
        assert [(e["offset"], e["data"]["n"]) for e in got] == [(n, n)]
    assert httpx.get(f"{gunicorn_url}/health").status_code == 200
