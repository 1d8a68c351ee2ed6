"""The tail API under ``/live`` and the GraphQL subscription (``app.services.live_feed``), on PostgreSQL."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.services.errors import BadRequest, Invalid, NotFound
from app.services.live_feed import Missed, Tail, open_tail
from tests.support.apps import ADMIN_PASSWORD, TenantCtx, login, new_tenant
from tests.support.fixtures import app_on

WAIT_S = 15.0


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app on PostgreSQL without Redis (one process: the publish wakes the readers directly)."""
    yield from app_on("postgresql", tmp_path_factory)


@pytest.fixture(scope="module")
def tenants(app: Flask) -> tuple[TenantCtx, TenantCtx]:
    """Two tenants."""
    client = app.test_client()
    token = login(client, "admin", ADMIN_PASSWORD)
    return new_tenant(client, token), new_tenant(client, token)


def _stream(client: FlaskClient, tenant: TenantCtx, partitions: int = 1) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/v1/streams", headers=tenant.headers(),
                       json={"name": name, "partitions": partitions}).status_code == 201
    return name


def _publish(client: FlaskClient, tenant: TenantCtx, stream: str, n: int, start: int = 0, **extra: object) -> None:
    resp = client.post(f"/api/v1/streams/{stream}/events", headers=tenant.headers("publish"),
                       json={"events": [{"type": "t.x", "data": {"n": start + i}, **extra} for i in range(n)]})
    assert resp.status_code == 201, resp.get_data(as_text=True)


def _open(app: Flask, tenant: TenantCtx, stream: str, start: object = "latest", **kwargs: object) -> Tail:
    from app.security import principal_from_api_key

    with app.test_request_context():
        return open_tail(principal_from_api_key(tenant.keys["consume"]), stream, start, **kwargs)  # type: ignore[arg-type]


def _drain(tail: Tail, n: int) -> tuple[list[int], list[Missed]]:
    """Numbers of the events and the Missed entries of batches until ``n`` events (or a quiet WAIT_S)."""
    numbers: list[int] = []
    missed: list[Missed] = []
    while len(numbers) < n:
        batch = tail.next_batch(WAIT_S)
        if batch is None:
            break
        numbers += [e["data"]["n"] for e in batch.events]
        missed += batch.missed
    return numbers, missed


def test_latest_offset_and_filters(app: Flask, tenants: tuple[TenantCtx, TenantCtx]) -> None:
    client, mine = app.test_client(), tenants[0]
    stream = _stream(client, mine, partitions=2)
    _publish(client, mine, stream, 4, key="a")  # all in one partition (the key's)
    latest = _open(app, mine, stream)
    everything = _open(app, mine, stream, "earliest")
    keyed = _open(app, mine, stream, "earliest", key="b")
    assert sum(latest.starts.values()) == 4 and set(everything.starts.values()) == {0}

    _publish(client, mine, stream, 3, start=4, key="b")
    assert _drain(latest, 3) == ([4, 5, 6], [])
    assert sorted(_drain(everything, 7)[0]) == list(range(7))
    assert _drain(keyed, 3) == ([4, 5, 6], [])
    for tail in (latest, everything, keyed):
        tail.close()
        tail.close()  # idempotent
        assert tail.next_batch(0.1) is None


def test_a_full_buffer_drops_the_oldest_and_says_where_to_resume(app: Flask,
                                                                 tenants: tuple[TenantCtx, TenantCtx]) -> None:
    client, mine = app.test_client(), tenants[0]
    stream = _stream(client, mine)
    tail = _open(app, mine, stream, buffer=3)
    _publish(client, mine, stream, 10)  # one append: the reader offers all ten at once to a 3-place buffer

    numbers, missed = _drain(tail, 3)
    assert numbers == [7, 8, 9]
    assert missed == [Missed(partition=0, from_offset=0, count=7)]
    resumed = _open(app, mine, stream, {0: missed[0].from_offset})
    assert _drain(resumed, 10) == (list(range(10)), [])
    tail.close()
    resumed.close()


def test_history_is_read_only_as_fast_as_it_is_taken(app: Flask, tenants: tuple[TenantCtx, TenantCtx]) -> None:
    client, mine = app.test_client(), tenants[0]
    stream = _stream(client, mine)
    _publish(client, mine, stream, 25)
    tail = _open(app, mine, stream, 0, buffer=4)  # far smaller than the history: nothing may be dropped
    numbers, missed = _drain(tail, 25)
    assert numbers == list(range(25)) and missed == []
    tail.close()


def test_next_batch_is_thread_safe_and_wakes_on_close(app: Flask, tenants: tuple[TenantCtx, TenantCtx]) -> None:
    client, mine = app.test_client(), tenants[0]
    stream = _stream(client, mine)
    tail = _open(app, mine, stream)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(tail.next_batch(WAIT_S)))
    waiter.start()
    tail.close()
    waiter.join(WAIT_S)
    assert not waiter.is_alive() and got == [None]


def test_refusals_match_the_rest_reads(app: Flask, tenants: tuple[TenantCtx, TenantCtx]) -> None:
    client, mine = app.test_client(), tenants[0]
    theirs = _stream(client, tenants[1])
    mine_stream = _stream(client, mine)
    _publish(client, mine, mine_stream, 2)
    with pytest.raises(NotFound):
        _open(app, mine, theirs)
    with pytest.raises(Invalid) as exc:
        _open(app, mine, mine_stream, 5, partition=0)
    assert exc.value.code == "invalid_offset"
    with pytest.raises(Invalid):
        _open(app, mine, mine_stream, partition=3)
    with pytest.raises(BadRequest) as bad:
        _open(app, mine, mine_stream, expression="data.n >")
    assert bad.value.code == "invalid_filter"
    with pytest.raises(BadRequest):
        _open(app, mine, mine_stream, -1)
