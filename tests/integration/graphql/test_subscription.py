"""The ``events`` subscription over WebSocket (graphql-transport-ws) with a real client: ``gql`` + websockets.

Events are published through the REST API of the same server while the subscription is open.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from flask import Flask
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from tests.integration.graphql.conftest import Api

EVENTS = gql("""subscription Live($s: String!, $f: EventFilter, $from: String!, $at: [PartitionOffset!]) {
  events(stream: $s, filter: $f, from: $from, fromOffsets: $at) {
    events { id type key data partition offset } missed { partition fromOffset count }
  }
}""")


def transport(url: str, token: str | None, in_headers: bool = False) -> WebsocketsTransport:
    """A graphql-transport-ws transport; the credential in connection_init's payload or the upgrade's headers."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return WebsocketsTransport(url=url.replace("http://", "ws://") + "/graphql",
                               subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
                               init_payload={} if in_headers else auth, headers=auth if in_headers else None,
                               ack_timeout=10, close_timeout=5)


def tails(app: Flask) -> int:
    """Live tails open in the server (same process as the test)."""
    from app.services.live_reader import hub_of

    return hub_of(app).tails()


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def collect(session: Any, variables: dict[str, Any], until: Callable[[list[dict[str, Any]]], bool],
                  timeout: float = 20.0) -> list[dict[str, Any]]:
    """Events pushed by the subscription until ``until(events)`` holds; completes the operation after."""
    got: list[dict[str, Any]] = []

    async def run() -> None:
        async for result in session.subscribe(EVENTS, variable_values=variables):
            got.extend(result["events"]["events"])
            if until(got):
                return  # leaving the loop sends "complete"

    await asyncio.wait_for(run(), timeout)
    return got


def test_events_published_over_rest_arrive_filtered(gql_app: Flask, api: Api) -> None:
    stream = api.stream(partitions=1)
    before = tails(gql_app)

    async def scenario() -> list[dict[str, Any]]:
        async with Client(transport=transport(api.url, api.tenant.keys["consume"])) as session:
            task = asyncio.ensure_future(collect(
                session, {"s": stream, "f": {"type": "order.*", "key": "c-1"}, "from": "latest"},
                until=lambda got: any(e["data"].get("last") for e in got)))
            # "latest" means from the moment the tail is open: publish only once it is.
            await wait_for(lambda: tails(gql_app) > before, "the tail to open")
            await asyncio.to_thread(api.publish, stream, [
                {"type": "order.created", "key": "c-1", "data": {"n": 1}},
                {"type": "order.created", "key": "c-2", "data": {"n": 2}},   # other key
                {"type": "invoice.sent", "key": "c-1", "data": {"n": 3}},    # other type
                {"type": "order.paid", "key": "c-1", "data": {"n": 4}},
            ])
            await asyncio.to_thread(api.publish, stream, [{"type": "order.done", "key": "c-1",
                                                            "data": {"n": 5, "last": True}}])
            got = await task
            # Completing the operation closes the server's tail.
            await wait_for(lambda: tails(gql_app) == before, "the tail to close")
            return got

    got = asyncio.run(scenario())
    assert [(e["type"], e["data"]["n"]) for e in got] == [("order.created", 1), ("order.paid", 4), ("order.done", 5)]
    assert [e["offset"] for e in got] == [0, 3, 4] and {e["key"] for e in got} == {"c-1"}


def test_resume_from_offsets_with_a_cel_expression(api: Api) -> None:
    stream = api.stream(partitions=1)
    api.publish(stream, [{"type": "t", "data": {"amount": a}} for a in (50, 150, 20, 300)])

    async def scenario() -> list[dict[str, Any]]:
        async with Client(transport=transport(api.url, api.tenant.keys["all"], in_headers=True)) as session:
            return await collect(session, {"s": stream, "f": {"expression": "data.amount > 100"}, "from": "latest",
                                           "at": [{"partition": 0, "offset": 1}]},
                                 until=lambda got: len(got) >= 2)

    got = asyncio.run(scenario())
    assert [(e["offset"], e["data"]["amount"]) for e in got] == [(1, 150), (3, 300)]


def test_queries_and_mutations_run_over_the_socket_too(api: Api) -> None:
    stream = api.stream(partitions=1)

    count = gql("query($s: String!) { stream(name: $s) { eventCount } }")

    async def scenario() -> tuple[Any, Any]:
        async with Client(transport=transport(api.url, api.tenant.keys["all"])) as session:
            assert await session.execute(count, variable_values={"s": stream}) == {"stream": {"eventCount": 0}}
            published = await session.execute(gql("""mutation($s: String!) {
              publish(stream: $s, events: [{type: "ws.event", data: {via: "socket"}}]) { results { offset } } }"""),
                                              variable_values={"s": stream})
            read = await session.execute(gql("query($s: String!) { events(stream: $s) { items { type data } } }"),
                                         variable_values={"s": stream})
            # Nothing read earlier on this connection is served again: every operation reads afresh.
            assert await session.execute(count, variable_values={"s": stream}) == {"stream": {"eventCount": 1}}
            return published, read

    published, read = asyncio.run(scenario())
    assert published == {"publish": {"results": [{"offset": 0}]}}
    assert read == {"events": {"items": [{"type": "ws.event", "data": {"via": "socket"}}]}}


def test_service_errors_reach_the_client_with_their_codes(api: Api, other: Api) -> None:
    theirs = other.stream()
    mine = api.stream(partitions=2)

    async def attempt(variables: dict[str, Any], scope: str = "all") -> dict[str, Any]:
        async with Client(transport=transport(api.url, api.tenant.keys[scope])) as session:
            with pytest.raises(TransportQueryError) as caught:
                await collect(session, variables, until=lambda got: True, timeout=10)
            return caught.value.errors[0]  # type: ignore[index]

    error = asyncio.run(attempt({"s": theirs, "from": "latest"}))
    assert error["extensions"]["code"] == "stream_not_found" and theirs in error["message"]
    error = asyncio.run(attempt({"s": mine, "from": "latest", "f": {"partition": 7}}))
    assert error["extensions"]["code"] == "invalid_partition"
    error = asyncio.run(attempt({"s": mine, "from": "somewhere"}))
    assert error["extensions"]["code"] == "invalid_parameter"
    error = asyncio.run(attempt({"s": mine, "from": "latest", "f": {"expression": "data.amount >"}}))
    assert error["extensions"]["code"] == "invalid_filter"


@pytest.mark.parametrize("token", [None, "ebk_not-a-key", "not.a.jwt"])
def test_connections_without_valid_credentials_are_closed_4403(api: Api, token: str | None) -> None:
    async def attempt() -> tuple[int | None, str | None]:
        url = api.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            payload = {"Authorization": f"Bearer {token}"} if token else {}
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code, ws.close_reason

    assert asyncio.run(attempt()) == (4403, "Forbidden")


def test_subscribing_before_connection_init_is_refused(api: Api) -> None:
    async def attempt() -> int | None:
        url = api.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { tenant } }"}}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code

    assert asyncio.run(attempt()) == 4401


def test_a_malformed_subscription_document_is_refused(api: Api) -> None:
    async def attempt() -> Any:
        url = api.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init",
                                      "payload": {"Authorization": f"Bearer {api.tenant.keys['all']}"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
            await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                      "payload": {"query": "subscription { events(stream: 1) { nope } }"}}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    answer = asyncio.run(attempt())
    assert answer["type"] == "error" and answer["id"] == "1"
    assert {e["extensions"]["code"] for e in answer["payload"]} == {"invalid_query"}


def test_an_upgrade_without_the_subprotocol_is_a_400(api: Api) -> None:
    resp = httpx.get(f"{api.url}/graphql", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                    "Sec-WebSocket-Version": "13",
                                                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert resp.status_code == 400 and resp.json()["errors"][0]["extensions"]["code"] == "bad_request"


def test_two_subscriptions_share_one_connection(gql_app: Flask, api: Api) -> None:
    stream = api.stream(partitions=1)
    before = tails(gql_app)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with Client(transport=transport(api.url, api.tenant.keys["consume"])) as session:
            created = asyncio.ensure_future(collect(session, {"s": stream, "f": {"type": "a"}, "from": "latest"},
                                                    until=lambda got: len(got) >= 2))
            paid = asyncio.ensure_future(collect(session, {"s": stream, "f": {"type": "b"}, "from": "latest"},
                                                 until=lambda got: len(got) >= 1))
            await wait_for(lambda: tails(gql_app) >= before + 2, "both tails to open")
            await asyncio.to_thread(api.publish, stream, [{"type": t, "data": {"n": n}}
                                                          for n, t in enumerate(["a", "b", "a"])])
            return await created, await paid

    created, paid = asyncio.run(scenario())
    assert [(e["type"], e["data"]["n"]) for e in created] == [("a", 0), ("a", 2)]
    assert [(e["type"], e["data"]["n"]) for e in paid] == [("b", 1)]


def test_a_revoked_key_stops_the_next_operation_on_an_open_socket(api: Api) -> None:
    key = api.rest("POST", "/api-keys", {"name": "short-lived", "scopes": ["consume"]}, status=201)
    me = gql("{ me { tenant } }")

    async def scenario() -> Any:
        async with Client(transport=transport(api.url, key["key"])) as session:
            assert await session.execute(me) == {"me": {"tenant": api.tenant.slug}}
            await asyncio.to_thread(api.rest, "DELETE", f"/api-keys/{key['id']}", None, "all", 204)
            with pytest.raises(TransportQueryError) as caught:
                await session.execute(me)
            return caught.value.errors

    errors = asyncio.run(scenario())
    assert [e["extensions"]["code"] for e in errors] == ["invalid_credentials"]


def test_a_revoked_key_ends_a_running_subscription_with_4403(api: Api) -> None:
    # The socket is re-checked while it lives (every SOCKET_AUTH_RECHECK_S, 0.3 s here), not only per operation:
    # a subscription already streaming stops, the socket closes with 4403, and nothing published after arrives.
    key = api.rest("POST", "/api-keys", {"name": "doomed", "scopes": ["consume"]}, status=201)
    stream = api.stream(partitions=1)
    query = "subscription($s: String!) { events(stream: $s, from: \"latest\") { events { data } } }"

    async def scenario() -> tuple[list[Any], int | None]:
        url = api.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key['key']}"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                      "payload": {"query": query, "variables": {"s": stream}}}))
            got: list[Any] = []
            await asyncio.to_thread(api.publish, stream, [{"type": "t", "data": {"n": 0}}])
            while not got:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                got += [e["data"]["n"] for e in msg["payload"]["data"]["events"]["events"]]
            await asyncio.to_thread(api.rest, "DELETE", f"/api-keys/{key['id']}", None, "all", 204)
            try:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if msg.get("type") == "next":
                        got += [e["data"]["n"] for e in msg["payload"]["data"]["events"]["events"]]
                        await asyncio.to_thread(api.publish, stream, [{"type": "t", "data": {"n": len(got)}}])
            except websockets.ConnectionClosed:
                pass
            return got, ws.close_code

    got, code = asyncio.run(scenario())
    assert code == 4403
    assert got[0] == 0
