"""Socket.IO ``/live`` on a real server (PostgreSQL, Redis as in production) with python-socketio clients."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import socketio
from flask import Flask

from tests.integration.api.test_auth import PASSWORD, make_user, new_key
from tests.integration.live.conftest import (
    REDIS_URL,
    LiveClient,
    create_stream,
    numbered,
    publish,
    served_clients,
)
from tests.support.apps import ADMIN_PASSWORD, TenantCtx, login, new_tenant
from tests.support.fixtures import app_on
from tests.support.live_server import live_server

Clients = Callable[[], LiveClient]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str]]:
    """An app on PostgreSQL and Redis behind a real HTTP server."""
    for application in app_on("postgresql", tmp_path_factory, REDIS_URL=REDIS_URL, SOCKET_AUTH_RECHECK_S=0.3):
        with live_server(application) as url:
            yield application, url


@pytest.fixture(scope="module")
def tenants(served: tuple[Flask, str]) -> tuple[TenantCtx, TenantCtx, str]:
    """Two tenants and an admin JWT."""
    client = served[0].test_client()
    token = login(client, "admin", ADMIN_PASSWORD)
    return new_tenant(client, token), new_tenant(client, token), token


@pytest.fixture
def clients() -> Iterator[Clients]:
    """Make connected-later LiveClients; all disconnected after the test."""
    yield from served_clients()


def _stream(url: str, tenant: TenantCtx, partitions: int = 1) -> str:
    name = f"s-{uuid.uuid4().hex[:8]}"
    create_stream(url, tenant, name, partitions)
    return name


def test_latest_then_published_events_arrive_in_order(served: tuple[Flask, str], tenants: tuple, clients: Clients
                                                      ) -> None:
    _, url = served
    mine = tenants[0]
    stream = _stream(url, mine, partitions=3)
    publish(url, mine, stream, numbered(4))  # before the subscription: not delivered from "latest"
    client = clients().connect(url, auth={"token": mine.keys["consume"]})

    ack = client.subscribe(stream=stream)
    assert set(ack) == {"subscription", "stream", "from"} and ack["stream"] == stream
    assert sum(ack["from"].values()) == 4 and set(ack["from"]) == {"0", "1", "2"}
    results = publish(url, mine, stream, numbered(30, start=100, key=None))

    events = client.wait_events(30, ack["subscription"])
    assert sorted(e["data"]["n"] for e in events) == list(range(100, 130))
    assert {(e["partition"], e["offset"]) for e in events} == {(r["partition"], r["offset"]) for r in results}
    for p in range(3):  # offset order within every partition
        offsets = [e["offset"] for e in events if e["partition"] == p]
        assert offsets == sorted(offsets)
    assert all(e["type"] == "t.x" and e["id"] for e in events)
    assert client.of("missed") == [] and client.of("error") == []


def test_from_an_offset_delivers_history_then_live(served: tuple[Flask, str], tenants: tuple, clients: Clients
                                                   ) -> None:
    _, url = served
    mine = tenants[0]
    stream = _stream(url, mine)
    publish(url, mine, stream, numbered(10))
    client = clients().connect(url, auth={"token": mine.keys["all"]})

    ack = client.subscribe(stream=stream, **{"from": 6})
    assert ack["from"] == {"0": 6}
    assert [e["offset"] for e in client.wait_events(4)] == [6, 7, 8, 9]
    publish(url, mine, stream, numbered(3, start=10))
    assert [e["data"]["n"] for e in client.wait_events(7)] == [6, 7, 8, 9, 10, 11, 12]

    # "earliest", and a map of partition -> offset (how a client resumes)
    other = clients().connect(url, auth={"token": mine.keys["all"]})
    first = other.subscribe(stream=stream, **{"from": "earliest"})
    resumed = other.subscribe(stream=stream, **{"from": {"0": 11}})
    assert [e["offset"] for e in other.wait_events(13, first["subscription"])] == list(range(13))
    assert [e["offset"] for e in other.wait_events(2, resumed["subscription"])] == [11, 12]


def test_type_key_and_expression_filters(served: tuple[Flask, str], tenants: tuple, clients: Clients) -> None:
    _, url = served
    mine = tenants[0]
    stream = _stream(url, mine, partitions=2)
    client = clients().connect(url, auth={"token": mine.keys["consume"]})
    by_type = client.subscribe(stream=stream, type="order.*")["subscription"]
    by_key = client.subscribe(stream=stream, key="k1")["subscription"]
    by_expr = client.subscribe(stream=stream, filter="data.amount > 100 && type == 'order.created'")["subscription"]
    everything = client.subscribe(stream=stream, batch=True)["subscription"]
    assert len({by_type, by_key, by_expr, everything}) == 4

    publish(url, mine, stream, [
        {"type": "order.created", "key": "k1", "data": {"amount": 50}},
        {"type": "order.created", "key": "k2", "data": {"amount": 500}},
        {"type": "order.paid", "key": "k1", "data": {"amount": 900}},
        {"type": "user.created", "key": "k1", "data": {"amount": 1000}},
        {"type": "user.created", "key": "k3", "data": {"amount": 7}},
    ])
    client.wait_events(5, everything)
    client.wait_until(lambda: len(client.events(by_type)) >= 3 and len(client.events(by_key)) >= 3
                      and len(client.events(by_expr)) >= 1)

    def amounts(sub: str) -> list[int]:
        return sorted(e["data"]["amount"] for e in client.events(sub))

    assert amounts(by_type) == [50, 500, 900]
    assert amounts(by_key) == [50, 900, 1000]
    assert amounts(by_expr) == [500]
    assert amounts(everything) == [7, 50, 500, 900, 1000]
    assert client.of("event") and client.of("events")  # one message per event, and the opt-in batches


def test_other_tenants_stream_is_refused_and_nothing_leaks(served: tuple[Flask, str], tenants: tuple,
                                                            clients: Clients) -> None:
    _, url = served
    mine, theirs, _ = tenants
    name = f"same-{uuid.uuid4().hex[:6]}"
    their_only = _stream(url, theirs)
    create_stream(url, mine, name)
    create_stream(url, theirs, name)
    client = clients().connect(url, auth={"token": mine.keys["all"]})

    refused = client.subscribe(stream=their_only)
    assert refused["error"]["code"] == "stream_not_found"
    assert set(refused["error"]) == {"code", "message", "details"}
    ack = client.subscribe(stream=name)  # the same name in my tenant is my stream
    publish(url, theirs, name, numbered(5, start=1000))
    publish(url, theirs, their_only, numbered(5, start=2000))
    publish(url, mine, name, numbered(2))

    events = client.wait_events(2, ack["subscription"])
    client.wait_until(lambda: len(client.events()) > 2, timeout=1.0)  # give a leak the chance to show
    assert sorted(e["data"]["n"] for e in client.events()) == [0, 1]
    assert all(e["data"]["n"] < 1000 for e in events)
    assert client.of("error")[0]["error"]["code"] == "stream_not_found"


def test_connections_need_credentials(served: tuple[Flask, str], tenants: tuple, clients: Clients) -> None:
    app, url = served
    mine, theirs, admin_token = tenants
    for auth in (None, {"token": "ebk_not-a-key"}, {"token": "not.a.jwt"}):
        with pytest.raises(socketio.exceptions.ConnectionError):
            clients().connect(url, auth=auth)

    # The console session (a Viewer), and a JWT naming its tenant, are accepted.
    username = make_user(app.test_client(), admin_token, "Viewer", [mine.slug])
    with httpx.Client(base_url=url) as browser:
        assert browser.post("/login/", data={"username": username, "password": PASSWORD}).status_code == 302
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    stream = _stream(url, mine)
    viewer = clients().connect(url, headers={"Cookie": cookie}, transport="polling")
    assert viewer.subscribe(stream=stream)["stream"] == stream
    admin = clients().connect(url, auth={"token": admin_token, "tenant": theirs.slug})
    assert admin.subscribe(stream=stream)["error"]["code"] == "stream_not_found"  # acting in theirs
    publish(url, mine, stream, numbered(1))
    assert [e["data"]["n"] for e in viewer.wait_events(1)] == [0]


@pytest.mark.parametrize("request_, code", [
    ({"stream": "nope"}, "stream_not_found"),
    ({}, "invalid_parameter"),
    ({"stream": "s", "from": -1}, "invalid_parameter"),
    ({"stream": "s", "from": "yesterday"}, "invalid_parameter"),
    ({"stream": "s", "partition": 5}, "invalid_partition"),
    ({"stream": "s", "partition": 0, "from": 99}, "invalid_offset"),
    ({"stream": "s", "filter": "data.amount >"}, "invalid_filter"),
    ({"stream": "s", "colour": "red"}, "unknown_field"),
    ({"stream": "s", "buffer": 0}, "invalid_parameter"),
    ({"stream": "s", "batch": "yes"}, "invalid_parameter"),
])
def test_bad_subscriptions_get_api_errors(served: tuple[Flask, str], tenants: tuple, clients: Clients,
                                          request_: dict, code: str) -> None:
    _, url = served
    mine = tenants[0]
    name = _stream(url, mine)
    body = {k: (name if v == "s" else v) for k, v in request_.items()}
    client = clients().connect(url, auth={"token": mine.keys["all"]})
    ack = client.sio.call("subscribe", body, namespace="/live", timeout=10)
    assert ack["error"]["code"] == code, ack
    assert client.wait_until(lambda: bool(client.of("error")))
    assert client.of("error")[0] == ack


def test_unsubscribe_stops_events(served: tuple[Flask, str], tenants: tuple, clients: Clients) -> None:
    _, url = served
    mine = tenants[0]
    stream = _stream(url, mine)
    client = clients().connect(url, auth={"token": mine.keys["all"]})
    keep = client.subscribe(stream=stream, type="a")["subscription"]
    drop = client.subscribe(stream=stream)["subscription"]
    publish(url, mine, stream, numbered(2, type_="a"))
    client.wait_events(2, drop)

    assert client.unsubscribe(drop) == {"unsubscribed": drop}
    assert client.unsubscribe(drop)["error"]["code"] == "subscription_not_found"
    publish(url, mine, stream, numbered(3, start=2, type_="a"))
    client.wait_events(5, keep)
    assert [e["data"]["n"] for e in client.events(drop)] == [0, 1]


def test_identical_subscriptions_share_a_feed_and_each_gets_everything(served: tuple[Flask, str], tenants: tuple,
                                                                       clients: Clients) -> None:
    _, url = served
    mine = tenants[0]
    stream = _stream(url, mine)
    group = [clients().connect(url, auth={"token": mine.keys["consume"]}) for _ in range(3)]
    acks = [c.subscribe(stream=stream, type="t.*") for c in group]
    assert len({a["subscription"] for a in acks}) == 1  # one feed, one encoded emit for all three
    group[0].unsubscribe(acks[0]["subscription"])  # the others keep it running
    publish(url, mine, stream, numbered(20))
    for c in group[1:]:
        assert [e["data"]["n"] for e in c.wait_events(20)] == list(range(20))
    assert group[0].events() == []


def test_slow_client_is_told_what_it_missed_and_resumes_from_there(served: tuple[Flask, str], tenants: tuple,
                                                                   clients: Clients) -> None:
    _, url = served
    mine = tenants[0]
    stream = _stream(url, mine)
    slow = clients().connect(url, auth={"token": mine.keys["all"]})
    # buffer 1: at most one message may wait for this client; one event per message; a burst far larger.
    sub = slow.subscribe(stream=stream, buffer=1)["subscription"]
    total = 4000
    for start in range(0, total, 2000):
        publish(url, mine, stream, numbered(2000, start=start))

    def accounted() -> int:
        return len(slow.events(sub)) + sum(m["count"] for p in slow.of("missed") for m in p["missed"])

    assert slow.wait_until(lambda: accounted() >= total), (len(slow.events(sub)), slow.of("missed"))
    got = {e["offset"] for e in slow.events(sub)}
    missed = [m for p in slow.of("missed") for m in p["missed"]]
    assert missed, "a client with buffer 1 cannot take a 4,000-event burst"
    assert accounted() == total and len(got) == len(slow.events(sub))  # each event once, or counted as missed
    assert all(m["partition"] == 0 and m["from_offset"] not in got for m in missed)

    # Resuming from each first missed offset gets the dropped events back.
    again = clients().connect(url, auth={"token": mine.keys["all"]})
    for m in missed:
        resumed = again.subscribe(stream=stream, **{"from": {"0": m["from_offset"]}}, batch=True)["subscription"]
        again.wait_events(total - m["from_offset"], resumed)
        got |= {e["offset"] for e in again.events(resumed)}
    assert got == set(range(total))


def test_deleting_the_stream_ends_its_feeds_with_an_error(served: tuple[Flask, str], tenants: tuple,
                                                          clients: Clients) -> None:
    _, url = served
    mine = tenants[0]
    stream = _stream(url, mine)
    client = clients().connect(url, auth={"token": mine.keys["all"]})
    sub = client.subscribe(stream=stream)["subscription"]
    assert httpx.delete(f"{url}/api/v1/streams/{stream}", headers=mine.headers()).status_code == 204
    assert client.wait_until(lambda: bool(client.of("error")))
    error = client.of("error")[0]
    assert error["subscription"] == sub and error["error"]["code"] == "stream_not_found"
    assert client.unsubscribe(sub)["error"]["code"] == "subscription_not_found"


def test_a_revoked_key_or_deactivated_user_is_cut_off(served: tuple[Flask, str], tenants: tuple, clients: Clients
                                                      ) -> None:
    # Credentials are checked at connect and then again every SOCKET_AUTH_RECHECK_S (0.3 s here): revoking the
    # key, or deactivating the console user, ends their connections with a credentials_revoked error, while a
    # connection on a credential that still holds goes on receiving events.
    from app.extensions import db

    app, url = served
    mine, _, admin_token = tenants
    stream = _stream(url, mine)
    key = new_key(app.test_client(), mine, ["consume"])
    doomed = clients().connect(url, auth={"token": key["key"]})
    assert doomed.subscribe(stream=stream)["stream"] == stream
    username = make_user(app.test_client(), admin_token, "Viewer", [mine.slug])
    with httpx.Client(base_url=url) as browser:
        assert browser.post("/login/", data={"username": username, "password": PASSWORD}).status_code == 302
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    viewer = clients().connect(url, headers={"Cookie": cookie}, transport="polling")
    assert viewer.subscribe(stream=stream)["stream"] == stream
    kept = clients().connect(url, auth={"token": mine.keys["all"]})
    assert kept.subscribe(stream=stream)["stream"] == stream

    resp = httpx.delete(f"{url}/api/v1/api-keys/{key['id']}", headers=mine.headers("all"))
    assert resp.status_code == 204, resp.text
    assert doomed.wait_until(lambda: not doomed.sio.connected)
    assert [e["error"]["code"] for e in doomed.of("error")] == ["credentials_revoked"]
    assert viewer.sio.connected  # the user is still active

    with app.app_context():
        user = app.appbuilder.sm.find_user(username=username)
        user.active = False
        db.session.commit()
    assert viewer.wait_until(lambda: not viewer.sio.connected)
    assert [e["error"]["code"] for e in viewer.of("error")] == ["credentials_revoked"]

    publish(url, mine, stream, numbered(2))
    assert [e["data"]["n"] for e in kept.wait_events(2)] == [0, 1]
    assert kept.sio.connected and not kept.of("error")
    assert doomed.events() == [] and viewer.events() == []
