"""GraphQL benchmark: what ``/graphql`` costs over the REST endpoint that does the same work.

Prints figures; asserts nothing about time. See bench/README.md and docs/performance.md.

Set-up: a fresh PostgreSQL database (SQL event log), ``gunicorn -w 2 --threads 8`` in production mode,
an API key and a 3-partition stream with ``--events`` events published over REST. Then, alternating the
two sides in every run so that drift hits both alike:

- **read**: a page of 100 events, ``GET /api/v1/streams/bench/events?limit=100`` against the GraphQL
  query selecting every field of the same page; ``--requests`` sequential keep-alive requests a side;
- **publish**: one event, ``POST /api/v1/streams/bench/events`` against the ``publish`` mutation;
- **live**: one ``events`` subscription over WebSocket (gql, graphql-transport-ws) while events are
  published over REST at ``--rate``/s; delay = receipt time - send time (one machine, one clock), with
  the REST publish's own response time in the same run as the baseline.

Medians over ``--runs`` runs of per-run medians; ratio = GraphQL / REST (the baseline).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import _support as sup
import httpx

READ_QUERY = """query($s: String!) { events(stream: $s, limit: 100) { items {
  id specversion source type time subject datacontenttype dataschema key headers data dataBase64
  partition offset logtime } next } }"""
PUBLISH_MUTATION = """mutation($s: String!, $e: [EventInput!]!) {
  publish(stream: $s, events: $e) { results { id partition offset } } }"""


def _timed(call: Callable[[], httpx.Response], status: int, n: int) -> float:
    """Median seconds of ``n`` sequential calls, each checked for ``status`` (and no GraphQL errors)."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = call()
        samples.append(time.perf_counter() - t0)
        if resp.status_code != status or b'"errors"' in resp.content:
            raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:500]}")
    return statistics.median(samples)


def compare(name: str, rest: Callable[[], httpx.Response], rest_status: int, graphql: Callable[[], httpx.Response],
            runs: int, n: int) -> sup.Row:
    """REST vs GraphQL medians over ``runs`` alternating runs."""
    rest_m, gql_m = [], []
    for run in range(runs):
        sides = [(rest_m, rest, rest_status), (gql_m, graphql, 200)]
        for out, call, status in sides if run % 2 == 0 else reversed(sides):
            out.append(_timed(call, status, n))
    r, g = statistics.median(rest_m) * 1000, statistics.median(gql_m) * 1000
    sup.say(f"  {name}: REST {r:.2f} ms, GraphQL {g:.2f} ms (runs: REST "
            f"{', '.join(f'{x * 1000:.2f}' for x in rest_m)}; GraphQL {', '.join(f'{x * 1000:.2f}' for x in gql_m)})")
    return (f"{name} p50 (GraphQL / REST)", f"{g:.2f} / {r:.2f} ms", "-", f"{g / r:.2f}x", "")


async def _live(base_url: str, key: str, rate: float, count: int) -> tuple[list[float], list[float]]:
    """Delays publish->receipt of ``count`` events over one subscription, and the REST publish times."""
    from gql import Client, gql
    from gql.transport.websockets import WebsocketsTransport

    delays: list[float] = []
    publish_times: list[float] = []
    transport = WebsocketsTransport(url=base_url.replace("http://", "ws://") + "/graphql",
                                    subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
                                    init_payload={"Authorization": f"Bearer {key}"})
    query = gql("""subscription($s: String!) { events(stream: $s, filter: {type: "live.*"}) {
      events { data } } }""")

    def publish() -> None:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            time.sleep(1.0)  # the subscription's tail opens first ("latest")
            for i in range(count):
                sent = time.time()
                t0 = time.perf_counter()
                sup.check(client.post(f"/api/v1/streams/{sup.STREAM}/events",
                                      json={"type": "live.tick", "data": {"i": i, "sent": sent}}), 201, "publish")
                publish_times.append(time.perf_counter() - t0)
                time.sleep(max(0.0, 1 / rate - (time.time() - sent)))

    async with Client(transport=transport) as session:
        threading.Thread(target=publish, daemon=True).start()
        async for batch in session.subscribe(query, variable_values={"s": sup.STREAM}):
            now = time.time()
            delays.extend(now - e["data"]["sent"] for e in batch["events"]["events"])
            if len(delays) >= count:
                break
    return delays, publish_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="sequential requests a side per run")
    parser.add_argument("--events", type=int, default=1000, help="events in the stream before the reads")
    parser.add_argument("--rate", type=float, default=50.0, help="events/s published during the live phase")
    parser.add_argument("--live-events", type=int, default=300)
    parser.add_argument("--port", type=int, default=5093)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke check")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.requests, args.live_events = 2, 30, 50

    with tempfile.TemporaryDirectory() as tmp, sup.backend_env("postgresql", Path(tmp)) as be:
        sup.migrate_and_init(be)
        with sup.web_server(be, args.port) as server:
            key = sup.provision(server.base_url, be.admin_password)
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
                for start in range(0, args.events, 500):
                    body = {"events": [{"type": "bench.read", "key": f"k{i}", "data": {"i": i, "pad": "x" * 150}}
                                       for i in range(start, min(args.events, start + 500))]}
                    sup.check(client.post(f"/api/v1/streams/{sup.STREAM}/events", json=body), 201, "seed")
                sup.say(f"GraphQL vs REST, postgresql, gunicorn -w 2 --threads 8; {args.runs} runs x "
                        f"{args.requests} sequential requests a side")
                one = {"type": "bench.one", "data": {"pad": "x" * 150}}
                rows = [
                    compare("read 100 events",
                            lambda: client.get(f"/api/v1/streams/{sup.STREAM}/events", params={"limit": 100}), 200,
                            lambda: client.post("/graphql", json={"query": READ_QUERY, "variables": {"s": sup.STREAM}}),
                            args.runs, args.requests),
                    compare("publish 1 event",
                            lambda: client.post(f"/api/v1/streams/{sup.STREAM}/events", json=one), 201,
                            lambda: client.post("/graphql", json={"query": PUBLISH_MUTATION,
                                                                  "variables": {"s": sup.STREAM, "e": [one]}}),
                            args.runs, args.requests),
                ]
            delays, publishes = asyncio.run(_live(server.base_url, key, args.rate, args.live_events))
            d, p = sup.percentiles_ms(delays), sup.percentiles_ms(publishes)
            rows.append((f"live delay p50/p95 ({len(delays)} events at {args.rate:g}/s)",
                         f"{d[50]:.1f} / {d[95]:.1f} ms", "-", f"{d[50] / p[50]:.1f}x REST publish p50", ""))
            rows.append(("REST publish p50/p95 (same run, baseline)", f"{p[50]:.1f} / {p[95]:.1f} ms", "-", "1.0x", ""))
            sup.print_rows("results", rows, {})


if __name__ == "__main__":
    main()
