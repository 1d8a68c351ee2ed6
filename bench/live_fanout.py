"""Live-feed fan-out benchmark: events/s delivered to many Socket.IO clients of ``/live`` and publish->receipt delay.

Prints figures; asserts nothing about time. See bench/README.md and docs/performance.md.

Set-up: a fresh PostgreSQL database (SQL event log), Redis, ``gunicorn -w 2 --threads 128`` (production
mode; clients spread over both workers, so most events cross processes through the Redis wake-up). A
paced publisher POSTs ``--rate`` events/s in batches of ``--batch`` over the REST API, each event's data
holding its send time. ``--clients`` python-socketio AsyncClients, split over ``--client-procs``
processes, subscribe from ``latest``; receipts during the measured window are counted (their sum over
clients / window = delivered events/s) and each one's delay is ``receive time - send time`` (one
machine, one clock). Two message forms: ``event`` (one message per event, API.md's form) and
``events`` (``"batch": true``).

Baseline, in the same run: a bare python-socketio server (threading mode, simple-websocket, no bus)
producing the same events at the same pace and emitting them to a room of as many clients, coalesced
like the bus (one ``events`` message per ``--coalesce-ms`` tick, the first after a quiet spell at once).
The ratio says what the bus (REST publish, log write, log read, filtering) adds on top of Socket.IO itself.
Clients use orjson (``json=``) and the WebSocket transport only. ``--runs`` repeats; medians are printed.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _support as sup
import httpx
import orjson

DATA_BYTES = 200
TARGET_P95_MS = 100.0
COALESCE_MS = 25.0  # the server's LIVE_COALESCE_MS default; the baseline ticks the same way
BUCKET_MS = 0.1  # delays are merged across client processes as a histogram of this resolution


# -- client side (runs in --client-procs subprocesses) ----------------------------------------------
class _OrjsonText:
    """python-socketio's ``json=`` hook: orjson (about 3x stdlib json on these payloads), str in and out."""

    loads = staticmethod(orjson.loads)

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()


async def _clients_main(url: str, count: int, key: str | None, batch: bool, warmup: float, duration: float) -> None:
    import socketio

    hist: collections.Counter[int] = collections.Counter()
    received = 0
    start_at = stop_at = float("inf")  # the parent sends the window once every client process is ready

    def record(sent: float) -> None:
        # Counted by receipt time: the rate is what clients take in during the window, the delay what they see.
        nonlocal received
        now = time.time()
        if start_at <= now < stop_at:
            received += 1
            hist[int((now - sent) * 1000 / BUCKET_MS)] += 1

    messages = 0

    def on_event(payload: dict[str, Any]) -> None:
        nonlocal messages
        messages += 1
        record(payload["event"]["data"]["sent"])

    def on_events(payload: dict[str, Any]) -> None:
        nonlocal messages
        messages += 1
        for event in payload["events"]:
            record(event["data"]["sent"])

    namespace = "/live" if key else "/"
    clients = []
    for _ in range(count):
        sio = socketio.AsyncClient(reconnection=False, json=_OrjsonText)
        sio.on("event", on_event, namespace=namespace)
        sio.on("events", on_events, namespace=namespace)
        await sio.connect(url, namespaces=[namespace], auth={"token": key} if key else None,
                          transports=["websocket"], wait_timeout=30)
        if key:
            ack = await sio.call("subscribe", {"stream": sup.STREAM, "batch": batch, "buffer": 100_000},
                                 namespace=namespace, timeout=30)
            if "error" in ack:
                raise RuntimeError(f"subscribe failed: {ack}")
        clients.append(sio)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    line = await asyncio.to_thread(sys.stdin.readline)
    start_at = float(line) + warmup
    stop_at = start_at + duration
    await asyncio.sleep(max(0.0, stop_at - time.time()) + 0.2)
    for sio in clients:
        await sio.disconnect()
    doc = {"received": received, "messages": messages, "hist": list(hist.items())}
    sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    sys.stdout.flush()


# -- baseline server: python-socketio alone --------------------------------------------------------
def _baseline_server(port: int, rate: float, batch: int, per_batch_message: bool, coalesce_ms: float) -> None:
    import socketio
    from werkzeug.serving import make_server

    sio = socketio.Server(async_mode="threading")
    app = socketio.WSGIApp(sio)
    started = threading.Event()

    @sio.event
    def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        sio.enter_room(sid, "all")

    @sio.on("go")
    def go(sid: str, data: Any = None) -> None:
        started.set()

    pending: list[dict[str, Any]] = []
    ready = threading.Condition()

    def producer() -> None:
        # What the publisher does to the bus: ``batch`` events every batch/rate seconds, stamped when made.
        started.wait()
        seq, interval, nxt = 0, batch / rate, time.perf_counter()
        while True:
            nxt += interval
            pause = nxt - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            sent = time.time()
            with ready:
                pending.extend(_event(seq + i, sent) for i in range(batch))
                ready.notify()
            seq += batch

    def emitter() -> None:
        # What a feed's pump does: at most one ``events`` message a tick (first one at once after a quiet
        # spell), or one ``event`` message per event.
        tick = coalesce_ms / 1000 if per_batch_message else 0.0
        next_at = 0.0
        while True:
            if tick:
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            with ready:
                while not pending:
                    ready.wait()
                events = pending[:]
                pending.clear()
            next_at = time.monotonic() + tick
            if per_batch_message:
                sio.emit("events", {"subscription": "b", "stream": sup.STREAM, "events": events}, to="all")
            else:
                for event in events:
                    sio.emit("event", {"subscription": "b", "stream": sup.STREAM, "event": event}, to="all")

    threading.Thread(target=producer, daemon=True).start()
    threading.Thread(target=emitter, daemon=True).start()
    server = make_server("127.0.0.1", port, app, threaded=True)
    server.serve_forever()


def _event(seq: int, sent: float) -> dict[str, Any]:
    """An event as the API shows it, about DATA_BYTES of data (the baseline sends the same shape)."""
    data = {"order_id": f"o-{seq:012d}", "sent": sent, "note": "x" * DATA_BYTES}
    return {"type": "bench.order.created", "data": data, "id": f"{seq:032x}", "partition": seq % 3, "offset": seq,
            "source": "/bench", "specversion": "1.0", "time": "2026-01-01T00:00:00Z"}


# -- orchestration ----------------------------------------------------------------------------------
def _start_clients(args: argparse.Namespace, url: str, key: str | None, batch: bool) -> list[subprocess.Popen[str]]:
    per = [args.clients // args.client_procs + (1 if i < args.clients % args.client_procs else 0)
           for i in range(args.client_procs)]
    procs = []
    for n in per:
        cmd = [sys.executable, __file__, "--client-mode", url, str(n), key or "-", "1" if batch else "0",
               str(args.warmup), str(args.duration)]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=sup.ROOT))
    for proc in procs:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"a client process failed to get ready: {line!r}")
    now = time.time()
    for proc in procs:  # the measured window starts after the warm-up, from now
        proc.stdin.write(f"{now}\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    return procs


def _collect(procs: list[subprocess.Popen[str]]) -> tuple[int, collections.Counter[int]]:
    total, messages, hist = 0, 0, collections.Counter()
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        doc = orjson.loads(out.strip().splitlines()[-1])
        total += doc["received"]
        messages += doc["messages"]
        hist.update({int(k): v for k, v in doc["hist"]})
    sup.say(f"  {total} events received in {messages} messages")
    return total, hist


def _percentiles(hist: collections.Counter[int], points: tuple[int, ...] = (50, 95, 99)) -> dict[int, float]:
    n = sum(hist.values())
    out: dict[int, float] = {}
    if not n:
        return {p: float("nan") for p in points}
    seen, keys = 0, sorted(hist)
    wanted = sorted(points)
    i = 0
    for k in keys:
        seen += hist[k]
        while i < len(wanted) and seen >= n * wanted[i] / 100:
            out[wanted[i]] = (k + 0.5) * BUCKET_MS
            i += 1
    return out


def _publisher(base_url: str, key: str, rate: float, batch: int, seconds: float,
               threads: int) -> tuple[int, float]:
    """POST ``rate`` events/s in batches for ``seconds`` (slot i by thread i % threads, so that one slow POST
    does not hold the schedule back); returns (events sent, mean POST duration in ms)."""
    interval = batch / rate
    slots = int(seconds / interval)
    first = time.perf_counter() + 0.05
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    sent, spent = [0] * threads, [0.0] * threads

    def run(t: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60, headers=headers) as client:
            for slot in range(t, slots, threads):
                pause = first + slot * interval - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                now = time.time()
                seq = slot * batch
                body = orjson.dumps({"events": [{"type": "bench.order.created", "key": f"k{(seq + i) % 97}",
                                                 "data": _event(seq + i, now)["data"]} for i in range(batch)]})
                t0 = time.perf_counter()
                sup.check(client.post(f"/api/v1/streams/{sup.STREAM}/events", content=body), 201, "publish")
                spent[t] += time.perf_counter() - t0
                sent[t] += batch

    t0 = time.perf_counter()
    sup.run_threads(threads, run)
    elapsed = time.perf_counter() - t0
    sup.say(f"  published {sum(sent)} events in {elapsed:.1f} s ({sum(sent) / elapsed:,.0f}/s, target {rate:,.0f}/s)")
    return sum(sent), 1000 * sum(spent) / max(1, sum(sent) // batch)


def _row(label: str, runs: list[tuple[float, dict[int, float]]], base: list[tuple[float, dict[int, float]]] | None,
         target: bool) -> list[sup.Row]:
    """Medians over the runs (each run's figures in brackets), the ratio to the baseline's medians."""
    def med(values: list[float]) -> float:
        return statistics.median(values)

    def each(values: list[float], fmt: str) -> str:
        return " (runs " + " / ".join(format(v, fmt) for v in values) + ")" if len(values) > 1 else ""

    rates = [r for r, _ in runs]
    rows: list[sup.Row] = [(f"{label}: delivered events/s (all clients)", f"{med(rates):,.0f}{each(rates, ',.0f')}",
                            "", "", "")]
    for p in (50, 95, 99):
        values = [pct[p] for _, pct in runs]
        ratio = ""
        if base:
            b = med([pct[p] for _, pct in base])
            ratio = f"{med(values) / b:.1f}x" if b else ""
        tgt, res = ("", "")
        if target and p == 95:
            tgt, res = "< 100 ms", "met" if med(values) < TARGET_P95_MS else "MISSED"
        rows.append((f"{label}: p{p} publish->receipt", f"{med(values):.1f} ms{each(values, '.1f')}", tgt, ratio, res))
    return rows


def _bus_phase(args: argparse.Namespace, base_url: str, key: str, batch_mode: bool,
               meter: sup.CpuMeter) -> tuple[float, dict[int, float], int, float]:
    procs = _start_clients(args, base_url, key, batch_mode)
    sup.say(f"  bus phase: {args.clients} clients subscribed, publishing")
    with meter.measure():
        sent, post_ms = _publisher(base_url, key, args.rate, args.batch, args.warmup + args.duration,
                                   args.publishers)
    received, hist = _collect(procs)
    return received / args.duration, _percentiles(hist), sent, post_ms


def _baseline_phase(args: argparse.Namespace, batch_mode: bool) -> tuple[float, dict[int, float]]:
    from tests.support.services import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--baseline-server", str(port), str(args.rate),
                               str(args.batch), "1" if batch_mode else "0", str(args.coalesce_ms)], cwd=sup.ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/socket.io/?EIO=4&transport=polling", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        import socketio

        trigger = socketio.Client()
        trigger.connect(url, transports=["polling"])
        procs = _start_clients(args, url, None, batch_mode)
        trigger.emit("go")
        trigger.disconnect()
        received, hist = _collect(procs)
    finally:
        server.terminate()
        server.wait(10)
    return received / args.duration, _percentiles(hist)


@contextlib.contextmanager
def _web(kind: str, be: sup.BackendEnv, port: int, workers: int, threads: int) -> Iterator[sup.WebServer]:
    """The bus's web process: gunicorn (production), or one Werkzeug threaded process (for comparison)."""
    if kind == "gunicorn":
        with sup.web_server(be, port, workers=workers, threads=threads) as server:
            yield server
        return
    code = ("from app import create_app; from werkzeug.serving import make_server; "
            f"make_server('127.0.0.1', {port}, create_app(), threaded=True).serve_forever()")
    log_path = be.workdir / "werkzeug.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=sup.ROOT, env=be.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        server = sup.WebServer(proc=proc, base_url=f"http://127.0.0.1:{port}", log_path=log_path)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(server.base_url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            yield server
        finally:
            sup.stop_process_group(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s published")
    parser.add_argument("--batch", type=int, default=50, help="events per POST (and per baseline production)")
    parser.add_argument("--publishers", type=int, default=4, help="publishing threads sharing the schedule")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3, help="runs per mode; medians are reported")
    parser.add_argument("--coalesce-ms", type=float, default=COALESCE_MS,
                        help="LIVE_COALESCE_MS of the server (and the baseline's tick)")
    parser.add_argument("--modes", default="events", help="events (batched messages), event (one each)")
    parser.add_argument("--server", choices=("gunicorn", "werkzeug"), default="gunicorn",
                        help="gunicorn (production: gthread workers), or one Werkzeug threaded process")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn -w (one per core)")
    parser.add_argument("--threads", type=int, default=128,
                        help="gunicorn --threads (a WebSocket holds a thread: clients/workers + publishers)")
    parser.add_argument("--quick", action="store_true", help="10 clients, 5 s, 1 run: a smoke check")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.duration, args.warmup, args.runs = 10, 5.0, 1.0, 1
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    workdir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    rows: list[sup.Row] = []
    cpu: dict[str, str] = {}
    loads: list[str] = []
    shape = f"gunicorn -w {args.workers} --threads {args.threads}" if args.server == "gunicorn" else "werkzeug"
    sup.say(f"live fan-out: {args.clients} clients in {args.client_procs} processes, {args.rate:.0f} events/s "
            f"published in batches of {args.batch}, LIVE_COALESCE_MS={args.coalesce_ms:g}, {shape}, "
            f"{args.runs} run(s) of {args.duration:.0f} s measured after {args.warmup:.0f} s")
    try:
        with sup.backend_env("postgresql", workdir) as be:
            be.env["REDIS_URL"] = redis_url
            be.env["LIVE_COALESCE_MS"] = str(args.coalesce_ms)
            sup.migrate_and_init(be)
            from tests.support.services import free_port

            with _web(args.server, be, free_port(), args.workers, args.threads) as server:
                key = sup.provision(server.base_url, be.admin_password)
                for mode in modes:
                    batched = mode == "events"
                    bus_runs: list[tuple[float, dict[int, float]]] = []
                    base_runs: list[tuple[float, dict[int, float]]] = []
                    for run in range(args.runs):
                        loads.append(f"{mode} run {run + 1}: load {os.getloadavg()[0]:.1f}")
                        base_rate, base_pct = _baseline_phase(args, batched)
                        meter = sup.CpuMeter(server.worker_pids)
                        rate, pct, sent, post_ms = _bus_phase(args, server.base_url, key, batched, meter)
                        sup.say(f"[{mode} {run + 1}] baseline: {base_rate:,.0f} ev/s, p50/95/99 "
                                f"{base_pct[50]:.1f}/{base_pct[95]:.1f}/{base_pct[99]:.1f} ms")
                        sup.say(f"[{mode} {run + 1}] bus: {rate:,.0f} ev/s of {args.clients * args.rate:,.0f} "
                                f"expected, p50/95/99 {pct[50]:.1f}/{pct[95]:.1f}/{pct[99]:.1f} ms; published "
                                f"{sent} (POST {post_ms:.1f} ms mean); load {os.getloadavg()[0]:.1f}")
                        bus_runs.append((rate, pct))
                        base_runs.append((base_rate, base_pct))
                        cpu[f"bus {mode} run {run + 1}"] = meter.summary()
                    label = "events (batch: true)" if batched else "event (one per message)"
                    rows += _row(f"bus, {label}", bus_runs, base_runs, target=True)
                    rows += _row(f"baseline python-socketio, {label}", base_runs, None, target=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sup.print_rows(f"live fan-out (PostgreSQL log, Redis, {shape}; {'; '.join(loads)})", rows, cpu)
    sup.print_markdown([("postgresql", rows)])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client-mode":
        url, n, key, batch, warmup, duration = sys.argv[2:8]
        asyncio.run(_clients_main(url, int(n), None if key == "-" else key, batch == "1", float(warmup),
                                  float(duration)))
    elif len(sys.argv) > 1 and sys.argv[1] == "--baseline-server":
        port, rate, batch, per_batch, coalesce = sys.argv[2:7]
        _baseline_server(int(port), float(rate), int(batch), per_batch == "1", float(coalesce))
    else:
        main()
