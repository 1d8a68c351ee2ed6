"""Helpers of bench/deliver.py: the receiver process, a Redis database, worker processes, drivers and CPU meters.

Run as ``python bench/_deliver_support.py receiver PORT`` it is the receiver: aiohttp.web, 200 at once,
the receive time of every webhook-id kept in memory and read back over /stats and /dump.
"""
from __future__ import annotations

import asyncio
import http.client
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _support as sup
import httpx
import orjson

SENT_FIELD = b'"sent_ns":"'
SENT_PLACEHOLDER = "0" * 19  # time.time_ns() has 19 digits: stamping keeps the body size
USER_AGENT = "apg-event-bus/0.1"


# -- the receiver (its own process) ------------------------------------------------------------------
def serve_receiver(port: int) -> None:
    """Answer POST /hook with 200 at once, recording (webhook-id, receive ns, the event's sent_ns)."""
    from aiohttp import web

    ids: list[str] = []
    received: list[int] = []
    sent: list[int] = []
    seen: set[str] = set()
    sample: dict[str, Any] = {}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time_ns()
        wid = request.headers.get("webhook-id", "")
        at = body.find(SENT_FIELD)
        ids.append(wid)
        received.append(now)
        sent.append(int(body[at + len(SENT_FIELD):at + len(SENT_FIELD) + 19]) if at >= 0 else 0)
        seen.add(wid)
        if not sample:
            sample.update(body=body.decode(), headers={str(k): v for k, v in request.headers.items()})
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({
            "received": len(ids), "unique": len(seen),
            "first_ns": received[0] if received else 0, "last_ns": received[-1] if received else 0}))

    async def dump(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"received_ns": received, "sent_ns": sent, "ids": ids}))

    async def get_sample(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(sample))

    async def reset(_: web.Request) -> web.Response:
        for holder in (ids, received, sent, seen, sample):
            holder.clear()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_get("/dump", dump)
    app.router.add_get("/sample", get_sample)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@dataclass
class Receiver:
    """The receiver process and a client of its stats endpoints."""

    proc: subprocess.Popen[bytes]
    base: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60))  # polled: keep-alive

    @property
    def url(self) -> str:
        """The webhook URL."""
        return self.base + "/hook"

    def _get(self, path: str) -> Any:
        resp = self.client.get(self.base + path)
        resp.raise_for_status()
        return orjson.loads(resp.content)

    def stats(self) -> dict[str, int]:
        """received, unique, first_ns, last_ns."""
        return self._get("/stats")

    def dump(self) -> dict[str, list[Any]]:
        """received_ns, sent_ns, ids: one entry per request, in arrival order."""
        return self._get("/dump")

    def sample(self) -> dict[str, Any]:
        """The first webhook received since the last reset: body and headers."""
        return self._get("/sample")

    def reset(self) -> None:
        """Forget everything received."""
        self.client.post(self.base + "/reset").raise_for_status()

    def wait_unique(self, count: int, timeout_s: float, stall_s: float = 60.0) -> dict[str, int]:
        """Poll until ``count`` distinct webhook-ids arrived; RuntimeError on timeout or no progress for stall_s."""
        deadline = time.monotonic() + timeout_s
        last, moved = -1, time.monotonic()
        while True:
            st = self.stats()
            if st["unique"] >= count:
                return st
            now = time.monotonic()
            if st["unique"] != last:
                last, moved = st["unique"], now
            if now > deadline or now - moved > stall_s:
                raise RuntimeError(f"receiver: {st['unique']} of {count} webhooks after {timeout_s:.0f}s")
            time.sleep(0.1)


@contextmanager
def receiver_process(workdir: Path) -> Iterator[Receiver]:
    """Start the receiver in its own process group; stopped on exit."""
    from tests.support.services import free_port

    port = free_port()
    log = (workdir / "receiver.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(Path(__file__)), "receiver", str(port)], cwd=sup.ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rec = Receiver(proc, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                rec.stats()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"receiver did not start:\n{(workdir / 'receiver.log').read_text()}") from None
                time.sleep(0.1)
        yield rec
    finally:
        rec.client.close()
        sup.stop_process_group(proc)
        log.close()


# -- Redis and worker processes -----------------------------------------------------------------------
@contextmanager
def redis_database(host: str = "127.0.0.1", port: int = 6379) -> Iterator[str]:
    """An empty Redis database (14 down to 1: 0 is everyone's default, 15 the tests'); flushed on exit."""
    import redis

    for n in range(14, 0, -1):
        client = redis.Redis(host=host, port=port, db=n)
        # Claimed with a marker so that a second bench started at the same moment takes another one.
        if client.dbsize() == 0 and client.set("bench:deliver:claim", os.getpid(), nx=True):
            break
        client.close()
    else:
        raise RuntimeError("no empty Redis database among 1..14")
    try:
        yield f"redis://{host}:{port}/{n}"
    finally:
        client.flushdb()
        client.close()


@contextmanager
def process(cmd: Sequence[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running command in its own process group (a Celery worker); TERM, then KILL, on exit."""
    log = log_path.open("wb")
    proc = subprocess.Popen(list(cmd), cwd=sup.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        yield proc
    finally:
        sup.stop_process_group(proc)
        log.close()


@contextmanager
def py_spy(pid: int, out: Path, mode: str = "wall") -> Iterator[None]:
    """Sample the threads of ``pid`` into ``out``.txt (collapsed stacks): every thread (wall), the GIL holder
    (gil), or the threads running on a CPU (cpu: includes work outside the GIL, e.g. in the database driver)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    flags = {"wall": ["--idle"], "gil": ["--gil"], "cpu": []}[mode]
    rate = os.environ.get("BENCH_PYSPY_RATE", "200")  # samples/s; more see more, and cost the worker more
    cmd = [str(sup.BIN / "py-spy"), "record", "--pid", str(pid), "--threads", *flags,
           "--rate", rate, "--format", "raw", "--output", f"{out}.txt", "--nonblocking"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=(out.parent / f"{out.name}.log").open("wb"))
    time.sleep(1.0)  # attached before the load starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(sup.children(p))
    return out


class Parties:
    """CPU used by each named party (process trees, or processes by name) over measured phases."""

    def __init__(self, trees: dict[str, Callable[[], Sequence[int]]]) -> None:
        self.trees = trees
        self.cpu: dict[str, dict[str, float]] = {}  # phase -> party -> CPU seconds
        self.wall: dict[str, float] = {}
        self.ticks: dict[str, list[int]] = {}  # phase -> [all, idle] jiffies of the machine

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        """Add the CPU used while the block runs to ``phase``."""
        p0, m0, t0 = sup._proc_cpu(), sup._machine_ticks(), time.perf_counter()  # noqa: SLF001 - same package
        yield
        p1, m1 = sup._proc_cpu(), sup._machine_ticks()  # noqa: SLF001
        self.wall[phase] = self.wall.get(phase, 0.0) + time.perf_counter() - t0
        ticks = self.ticks.setdefault(phase, [0, 0])
        ticks[0] += m1[0] - m0[0]
        ticks[1] += m1[1] - m0[1]
        owner: dict[int, str] = {}
        for name, roots in self.trees.items():
            for pid in roots():
                owner.update(dict.fromkeys(tree(pid), name))
        owner[os.getpid()] = "bench"  # its CPU includes its waited-for children (plain client processes)
        totals = self.cpu.setdefault(phase, {})
        for pid, (comm, cpu) in p1.items():
            used = cpu - p0.get(pid, (comm, 0.0))[1]
            who = owner.get(pid) or next((k for k in ("postgres", "redis", "tansu") if comm.startswith(k)), "other")
            totals[who] = totals.get(who, 0.0) + used

    def seconds(self, phase: str, party: str) -> float:
        """CPU seconds ``party`` used in ``phase``."""
        return self.cpu.get(phase, {}).get(party, 0.0)

    def summary(self, phase: str) -> str:
        """'worker 0.90, receiver 0.40, ... cores; machine 97% busy'."""
        wall = self.wall.get(phase) or 1.0
        cores = {k: v / wall for k, v in self.cpu.get(phase, {}).items()}
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cores.items(), key=lambda kv: -kv[1]) if v >= 0.01)
        every, idle = self.ticks.get(phase, [1, 0])
        return f"{parts} cores; machine {100 * (1 - idle / max(1, every)):.0f}% busy"


# -- drivers --------------------------------------------------------------------------------------------
def stamp(body: bytes) -> bytes:
    """The body with every event's sent_ns set to now."""
    return body.replace(SENT_PLACEHOLDER.encode(), str(time.time_ns()).encode())


def paced_publish(base_url: str, key: str, bodies: Sequence[bytes], rate: float, threads: int,
                  durations: list[float] | None = None) -> float:
    """POST the bodies at ``rate`` requests/s (open loop, stamped at send) from ``threads`` keep-alive senders.

    ``durations``: gets each request's response time (s), when given.
    """
    path = f"/api/v1/streams/{sup.STREAM}/events"
    host, port = base_url.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conns = [http.client.HTTPConnection(host, int(port), timeout=sup.HTTP_TIMEOUT_S) for _ in range(threads)]
    counter = itertools.count()
    t0 = time.perf_counter() + 0.2

    def work(i: int) -> None:
        conn = conns[i]
        while (n := next(counter)) < len(bodies):
            delay = t0 + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            conn.request("POST", path, stamp(bodies[n]), headers)
            resp = conn.getresponse()
            text = resp.read()
            if durations is not None:
                durations.append(time.perf_counter() - sent)  # list.append is atomic: threads share it
            if resp.status != 201:
                raise RuntimeError(f"publish: HTTP {resp.status}\n{text[:2000]!r}")

    try:
        sup.run_threads(threads, work)
    finally:
        for c in conns:
            c.close()
    return len(bodies) / (time.perf_counter() - t0)


def plain_clients(url: str, bodies: Sequence[tuple[str, bytes]], secret: str, concurrency: int,
                  client: str = "aiohttp", processes: int = 1) -> None:
    """``plain_client`` in ``processes`` processes at once, each with its share of the bodies and of the concurrency.

    The children import and connect first and start together (a barrier): the receiver's first-to-last rate then
    measures them all sending, not one starting while another is still importing.
    """
    if processes <= 1:
        plain_client(url, bodies, secret, concurrency, client)
        return
    ctx = multiprocessing.get_context("spawn")  # the bench has threads: no fork
    start = ctx.Barrier(processes)
    children = [ctx.Process(target=plain_client, args=(url, list(bodies[i::processes]), secret,
                                                       max(1, concurrency // processes), client, start))
                for i in range(processes)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    failed = [c.exitcode for c in children if c.exitcode != 0]
    if failed:
        raise RuntimeError(f"plain client processes failed: exit codes {failed}")


def plain_client(url: str, bodies: Sequence[tuple[str, bytes]], secret: str, concurrency: int,
                 client: str = "aiohttp", start: Any = None) -> None:
    """POST (id, body) pairs, signed like the bus does, with ``concurrency`` requests in flight, no bus: through
    aiohttp (a plain async HTTP client), or ``http1`` (the bus's own HTTP/1.1 client, with nothing of the bus).
    ``start``: a barrier to wait at once ready (``plain_clients``)."""
    import aiohttp

    from app.bus.delivery.http1 import Http1Pool
    from app.bus.delivery.signing import webhook_headers

    if start is not None:
        start.wait()

    async def with_aiohttp() -> None:
        connector = aiohttp.TCPConnector(limit=concurrency)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        async with aiohttp.ClientSession(connector=connector, headers=headers, auto_decompress=False) as session:
            work = iter(bodies)

            async def one() -> None:
                for event_id, body in work:
                    async with session.post(url, data=body, headers=webhook_headers(event_id, [secret], body),
                                            allow_redirects=False) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"plain client: HTTP {resp.status}")

            await asyncio.gather(*(one() for _ in range(concurrency)))

    async def with_http1() -> None:
        pool = Http1Pool(limit=concurrency, user_agent=USER_AGENT)
        work = iter(bodies)

        async def one() -> None:
            for event_id, body in work:
                resp = await pool.post(url, body, webhook_headers(event_id, [secret], body), 15.0)
                if resp.status != 200:
                    raise RuntimeError(f"plain client: HTTP {resp.status}")

        try:
            await asyncio.gather(*(one() for _ in range(concurrency)))
        finally:
            await pool.close()

    asyncio.run(with_http1() if client == "http1" else with_aiohttp())


def timeline(received_ns: Sequence[int], bucket_s: float = 0.25) -> tuple[list[int], float]:
    """Deliveries/s in each ``bucket_s`` from the first one, and the rate over the middle 80% of them."""
    ts = sorted(received_ns)
    if len(ts) < 10:
        return [], float("nan")
    counts: dict[int, int] = {}
    for t in ts:
        b = int((t - ts[0]) / (bucket_s * 1e9))
        counts[b] = counts.get(b, 0) + 1
    lo, hi = ts[len(ts) // 10], ts[9 * len(ts) // 10]
    middle = 0.8 * len(ts) / ((hi - lo) / 1e9) if hi > lo else float("nan")
    return [round(counts.get(i, 0) / bucket_s) for i in range(max(counts) + 1)], middle


def enqueue_naive(broker: str, url: str, bodies: Sequence[tuple[str, bytes]], secret: str) -> float:
    """One Celery task per event onto the naive worker's queue; returns the enqueue rate (tasks/s)."""
    from celery import Celery

    client = Celery("bench_naive_client", broker=broker)
    client.conf.update(task_serializer="json", task_ignore_result=True)
    t0 = time.perf_counter()
    with client.producer_or_acquire() as producer:
        for event_id, body in bodies:
            client.send_task("bench_naive.deliver", args=[url, event_id, body.decode(), secret], queue="bench_naive",
                             producer=producer)
    rate = len(bodies) / (time.perf_counter() - t0)
    client.close()
    return rate


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "receiver":
        serve_receiver(int(sys.argv[2]))
    else:
        sys.exit("usage: _deliver_support.py receiver PORT")
