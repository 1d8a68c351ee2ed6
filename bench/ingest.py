"""Ingest benchmark: HTTP batch throughput vs the raw backend, single-event latency, web-process RSS.

Prints figures; asserts nothing about time. See bench/README.md and docs/performance.md.
"""
from __future__ import annotations

import argparse
import io
import itertools
import multiprocessing as mp
import os
import platform
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _support as sup
import orjson

from app.bus.partitioner import partition_for_key

BATCH = 1000
DATA_BYTES = 200
EVENT_TYPE = "bench.order.created"
RAW_TOPIC = "bench.raw"
# The app's producer settings (app/bus/log/kafka.py), so the raw baseline pays for the same guarantees.
KAFKA_PRODUCER = {"acks": "all", "enable.idempotence": True, "linger.ms": 0, "compression.type": "lz4"}
Event = dict[str, Any]


# -- workload ---------------------------------------------------------------------------------------
def _data(seq: int) -> dict[str, Any]:
    return {"order_id": f"o-{seq:012d}", "customer": f"customer-{seq % 997:04d}", "amount_cents": seq % 100_000,
            "currency": "EUR", "status": "created", "note": ""}


_PAD = DATA_BYTES - len(orjson.dumps(_data(0)))


def make_event(seq: int) -> Event:
    """One event with a key and about DATA_BYTES of JSON data."""
    data = _data(seq)
    data["note"] = "x" * _PAD
    return {"type": EVENT_TYPE, "key": data["customer"], "data": data}


def make_batches(first_seq: int, batches: int) -> list[list[Event]]:
    """``batches`` lists of BATCH events, sequence numbers from ``first_seq``."""
    return [[make_event(first_seq + b * BATCH + i) for i in range(BATCH)] for b in range(batches)]


def batch_bodies(batches: Sequence[Sequence[Event]]) -> list[bytes]:
    """Pre-serialised request bodies ``{"events": [...]}``."""
    return [orjson.dumps({"events": list(b)}) for b in batches]


# -- raw baselines: the same events, encoded in the timed loop, written straight to the backend -----------
def _rows(events: Sequence[Event], stream_id: int, heads: list[int]) -> list[tuple[Any, ...]]:
    """Rows shaped like the `events` table, as the SQL log builds them (id, murmur2 partition, offset)."""
    now = time.time_ns() // 1_000_000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1000)) + f".{now % 1000:03d}Z"  # CloudEvents time
    rows = []
    for ev in events:
        key = ev["key"]
        p = partition_for_key(key.encode(), sup.PARTITIONS)
        off = heads[p]
        heads[p] = off + 1
        rows.append((stream_id, p, off, now, str(uuid.uuid4()), ev["type"], "/", stamp, None, "application/json",
                     None, key, None, orjson.dumps(ev["data"])))
    return rows


_COPY_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_line(r: tuple[Any, ...]) -> str:
    texts = ["\\N" if v is None else v.translate(_COPY_ESC) for v in r[4:13]]
    return f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t" + "\t".join(texts) + f"\t\\\\x{r[13].hex()}\n"


class RawWriter:
    """A backend written to directly. Each writer thread owns a handle and its own stream id (own offsets)."""

    def open(self) -> Any:
        """A connected, warmed-up handle (outside the clock)."""
        raise NotImplementedError

    def write(self, handle: Any, sid: int, heads: list[int], batch: Sequence[Event]) -> None:
        """Encode and durably write one batch."""
        raise NotImplementedError

    def close(self, handle: Any) -> None:
        """Release the handle."""
        handle.close()


class RawSqlite(RawWriter):
    """executemany into an `events`-shaped table in its own SQLite file: WAL, synchronous=FULL, commit per batch."""

    def __init__(self, workdir: Path) -> None:
        import sqlalchemy as sa

        from app.bus.log.sql_schema import events

        self.path = workdir / "raw.db"
        engine = sa.create_engine(f"sqlite:///{self.path}")
        md = sa.MetaData()
        events.to_metadata(md)
        md.create_all(engine)
        engine.dispose()
        self.sql = f"INSERT INTO events VALUES ({', '.join('?' * len(events.columns))})"  # noqa: S608 - constant

    def open(self) -> sqlite3.Connection:
        """A connection with the app's PRAGMAs."""
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def write(self, handle: sqlite3.Connection, sid: int, heads: list[int], batch: Sequence[Event]) -> None:
        """BEGIN IMMEDIATE, executemany, COMMIT."""
        rows = _rows(batch, sid, heads)
        handle.execute("BEGIN IMMEDIATE")
        handle.executemany(self.sql, rows)
        handle.execute("COMMIT")


class RawPostgres(RawWriter):
    """COPY (psycopg2 copy_expert) into a table LIKE `events` in the same database, commit per batch."""

    def __init__(self, dsn: str) -> None:
        import psycopg2

        self.dsn = dsn
        conn = psycopg2.connect(dsn)
        with conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_raw_events")
            cur.execute("CREATE TABLE bench_raw_events (LIKE events INCLUDING ALL)")
        conn.close()

    def open(self) -> Any:
        """A psycopg2 connection."""
        import psycopg2

        return psycopg2.connect(self.dsn)

    def write(self, handle: Any, sid: int, heads: list[int], batch: Sequence[Event]) -> None:
        """COPY the batch's rows and commit."""
        rows = _rows(batch, sid, heads)
        with handle.cursor() as cur:
            cur.copy_expert("COPY bench_raw_events FROM STDIN", io.StringIO("".join(map(_copy_line, rows))))
        handle.commit()


class RawKafka(RawWriter):
    """A confluent-kafka Producer per writer (acks=all, the app's settings), ce_ headers, flush per batch."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        self.bootstrap = bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})  # no info chatter on exit
        for fut in admin.create_topics([NewTopic(RAW_TOPIC, sup.PARTITIONS, 1)]).values():
            fut.result(30)
        del admin  # no librdkafka handle of ours survives into the forked writers
        self.errors: list[str] = []

    def open(self) -> Any:
        """A producer that has already delivered once (connection, metadata and producer id done)."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, **KAFKA_PRODUCER})
        for p in range(sup.PARTITIONS):
            producer.produce(RAW_TOPIC, value=b"warm-up", partition=p, on_delivery=self._report)
        self._flush(producer)
        return producer

    def _report(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def _flush(self, producer: Any) -> None:
        if producer.flush(60):
            raise RuntimeError("raw Kafka producer: messages not delivered in 60 s")
        if self.errors:
            raise RuntimeError(f"raw Kafka producer: {self.errors[0]}")

    def write(self, handle: Any, sid: int, heads: list[int], batch: Sequence[Event]) -> None:
        """Produce the batch in Kafka binary mode and flush (every delivery acknowledged)."""
        now = time.time_ns() // 1_000_000
        stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1000)) + f".{now % 1000:03d}Z").encode()
        for ev in batch:
            key = ev["key"].encode()
            headers = [("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()), ("ce_source", b"/"),
                       ("ce_type", ev["type"].encode()), ("ce_time", stamp), ("content-type", b"application/json")]
            handle.produce(RAW_TOPIC, value=orjson.dumps(ev["data"]), key=key,
                           partition=partition_for_key(key, sup.PARTITIONS), headers=headers,
                           on_delivery=self._report)
        self._flush(handle)

    def close(self, handle: Any) -> None:
        """Flush what is left."""
        handle.flush(10)


def _raw_child(raw: RawWriter, batches: Sequence[Sequence[Event]], threads: int, first_sid: int,
               ready: Any, errors: Any) -> None:
    """One writer process: open handles, wait for the start signal, write its share of batches."""
    try:
        handles = [raw.open() for _ in range(threads)]
    except BaseException as exc:
        errors.put(f"raw writer set-up: {exc!r}")
        ready.abort()
        os._exit(1)
    counter = itertools.count()

    def work(i: int) -> None:
        heads = [0] * sup.PARTITIONS
        while (n := next(counter)) < len(batches):
            raw.write(handles[i], first_sid + i, heads, batches[n])

    code = 0
    try:
        ready.wait(120)
        sup.run_threads(threads, work)
    except BaseException as exc:
        errors.put(f"raw writer: {exc!r}")
        code = 1
    for h in handles:
        raw.close(h)
    os._exit(code)


def run_raw(raw: RawWriter, batches: Sequence[Sequence[Event]], procs: int, threads: int, run_no: int) -> float:
    """Write all batches with ``procs`` forked processes of ``threads`` writers each; return events/s.

    Processes, like the web server's workers, so the raw side gets the same CPU parallelism (no shared GIL).
    """
    ctx = mp.get_context("fork")
    ready = ctx.Barrier(procs + 1)
    errors = ctx.Queue()
    children = [ctx.Process(target=_raw_child, args=(raw, batches[i::procs], threads, run_no * 1000 + i * 100 + 1,
                                                     ready, errors), daemon=True) for i in range(procs)]
    for c in children:
        c.start()
    try:
        ready.wait(120)
        t0 = time.perf_counter()
        for c in children:
            c.join()
        elapsed = time.perf_counter() - t0
    except threading.BrokenBarrierError:
        for c in children:
            c.join(10)
    finally:
        for c in children:
            if c.is_alive():
                c.kill()
    if any(c.exitcode for c in children):
        raise RuntimeError(errors.get(timeout=5) if not errors.empty() else "a raw writer failed")
    return len(batches) * BATCH / elapsed


def raw_writer(be: sup.BackendEnv) -> RawWriter:
    """The raw baseline of a backend."""
    if be.name == "sqlite":
        return RawSqlite(be.workdir)
    if be.name == "postgresql":
        return RawPostgres(be.pg_dsn or "")
    return RawKafka(be.kafka_bootstrap or "")


# -- one backend -------------------------------------------------------------------------------------
@dataclass
class Result:
    """Figures of one backend."""

    backend: str
    http_runs: list[float] = field(default_factory=list)
    raw_runs: list[float] = field(default_factory=list)
    latency_ms: dict[int, float] = field(default_factory=dict)
    sched_latency_ms: dict[int, float] = field(default_factory=dict)
    late_sends: int = 0
    unloaded_ms: dict[int, float] = field(default_factory=dict)  # one client, one request at a time
    web_cpu_ms: float = 0.0  # web-process CPU per single-event request
    client_cpu_ms: float = 0.0
    singles: int = 0
    achieved_rate: float = 0.0
    events_ingested: int = 0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    hwm_mb: float = 0.0
    cpu: dict[str, str] = field(default_factory=dict)  # phase -> cores used by each party

    @property
    def http(self) -> float:
        """Median HTTP events/s."""
        return statistics.median(self.http_runs) if self.http_runs else float("nan")

    @property
    def raw(self) -> float:
        """Median raw events/s."""
        return statistics.median(self.raw_runs) if self.raw_runs else float("nan")


def _max_rss_mb(server: sup.WebServer, field_name: str = "VmRSS") -> float:
    return max(sup.proc_status_kb(pid, field_name) for pid in server.worker_pids()) / 1024


_say = sup.say


def _raw_shape(args: argparse.Namespace) -> tuple[int, int]:
    """(processes, threads each) of the raw writers: as many processes as web workers, as many writers as clients."""
    return args.workers, max(1, args.threads // args.workers)


class _Seq:
    """Hands out sequence numbers a batch at a time, so every event of a run is distinct."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, batches: int) -> int:
        """The first sequence number of ``batches`` batches."""
        first, self.next = self.next, self.next + batches * BATCH
        return first

    def batches(self, count: int) -> list[list[Event]]:
        """The next ``count`` batches of events."""
        return make_batches(self.take(count), count)


def run_backend(name: str, args: argparse.Namespace) -> Result:
    """Set up one backend from scratch, measure it, tear it down."""
    res = Result(name)
    seq = _Seq()
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp, sup.backend_env(name, Path(tmp)) as be:
        _say(f"[{name}] migrating and initialising ({be.env['EVENT_LOG_URL']}, {be.database_url.split('@')[-1]})")
        sup.migrate_and_init(be)
        raw = raw_writer(be)
        if args.raw_only:
            for run in range(args.runs):
                res.raw_runs.append(run_raw(raw, seq.batches(args.batch_requests), *_raw_shape(args), run))
                _say(f"[{name}] run {run + 1}: raw {res.raw_runs[-1]:,.0f} ev/s")
            return res
        from tests.support.services import free_port

        with sup.web_server(be, free_port(), args.workers, args.server_threads) as server:
            key = sup.provision(server.base_url, be.admin_password)
            meters = {phase: sup.CpuMeter(lambda: [server.proc.pid, *server.worker_pids()])
                      for phase in ("http batches", "raw batches", "single events", "bulk ingest")}
            sup.post_batches(server.base_url, key, batch_bodies(seq.batches(4)), BATCH, args.threads)
            sup.paced_singles(server.base_url, key, _single_bodies(seq, 200), 200, 8)
            res.events_ingested = 4 * BATCH + 200
            res.rss_before_mb = _max_rss_mb(server)
            _say(f"[{name}] warm; worker RSS {res.rss_before_mb:.0f} MB; {args.runs} runs of "
                 f"{args.batch_requests} x {BATCH} events, {args.threads} client threads")
            _batch_phase(res, args, server, key, raw, seq, meters)
            _singles_phase(res, args, server, key, seq, meters["single events"])
            _rss_phase(res, args, server, key, seq, meters["bulk ingest"])
            res.cpu = {phase: m.summary() for phase, m in meters.items()}
    return res


def _single_bodies(seq: _Seq, count: int) -> list[bytes]:
    """``count`` one-event request bodies."""
    first = seq.take(-(-count // BATCH))
    return [orjson.dumps(make_event(first + i)) for i in range(count)]


def _batch_phase(res: Result, args: argparse.Namespace, server: sup.WebServer, key: str, raw: RawWriter,
                 seq: _Seq, meters: dict[str, sup.CpuMeter]) -> None:
    """HTTP batch runs alternating with raw runs of the same events (same table sizes, same machine state)."""
    for run in range(args.runs):
        batches = seq.batches(args.batch_requests)
        bodies = batch_bodies(batches)
        with meters["http batches"].measure():
            res.http_runs.append(sup.post_batches(server.base_url, key, bodies, BATCH, args.threads))
        res.events_ingested += len(batches) * BATCH
        with meters["raw batches"].measure():
            res.raw_runs.append(run_raw(raw, batches, *_raw_shape(args), run))
        _say(f"[{res.backend}] run {run + 1}: http {res.http_runs[-1]:,.0f} ev/s, raw {res.raw_runs[-1]:,.0f} ev/s")


def _singles_phase(res: Result, args: argparse.Namespace, server: sup.WebServer, key: str, seq: _Seq,
                   meter: sup.CpuMeter) -> None:
    """One client one at a time (no queue), then the paced open-loop run."""
    one = sup.paced_singles(server.base_url, key, _single_bodies(seq, args.unloaded), 1e9, 1)
    res.unloaded_ms = sup.percentiles_ms(one.service)
    res.events_ingested += args.unloaded
    _say(f"[{res.backend}] singles one at a time: {one.achieved_rate:.0f}/s, p50 {res.unloaded_ms[50]:.2f} ms, "
         f"p95 {res.unloaded_ms[95]:.2f} ms")
    count = int(args.rate * args.duration)
    bodies = _single_bodies(seq, count)
    with meter.measure():
        lat = sup.paced_singles(server.base_url, key, bodies, args.rate, args.latency_threads)
    res.events_ingested += count
    res.latency_ms = sup.percentiles_ms(lat.service)
    res.sched_latency_ms = sup.percentiles_ms(lat.from_schedule)
    res.late_sends, res.singles, res.achieved_rate = lat.late_sends, count, lat.achieved_rate
    res.web_cpu_ms = meter.totals.get("web", 0.0) * 1000 / count
    res.client_cpu_ms = meter.totals.get("client", 0.0) * 1000 / count
    _say(f"[{res.backend}] singles at {lat.achieved_rate:.0f}/s: p50 {res.latency_ms[50]:.2f} ms, "
         f"p95 {res.latency_ms[95]:.2f} ms, p99 {res.latency_ms[99]:.2f} ms")


def _rss_phase(res: Result, args: argparse.Namespace, server: sup.WebServer, key: str, seq: _Seq,
               meter: sup.CpuMeter) -> None:
    """Batches until ``--rss-events`` events in all, then the workers' resident memory."""
    while res.events_ingested < args.rss_events:
        n = min(100, -(-(args.rss_events - res.events_ingested) // BATCH))
        bodies = batch_bodies(seq.batches(n))
        with meter.measure():
            sup.post_batches(server.base_url, key, bodies, BATCH, args.threads)
        res.events_ingested += n * BATCH
    res.rss_after_mb = _max_rss_mb(server)
    res.hwm_mb = _max_rss_mb(server, "VmHWM")
    _say(f"[{res.backend}] after {res.events_ingested:,} events: worker RSS {res.rss_after_mb:.0f} MB "
         f"(peak {res.hwm_mb:.0f} MB)")


# -- report ------------------------------------------------------------------------------------------
def _miss(value: float, limit: float, unit: str, lower_is_better: bool) -> str:
    ok = value < limit if lower_is_better else value >= limit
    if ok:
        return "pass"
    return f"MISS by {abs(value - limit):.3g}{unit} ({abs(value / limit - 1) * 100:.1f}%)"


def report(res: Result, args: argparse.Namespace) -> list[tuple[str, str, str, str, str]]:
    """Rows (figure, value, target, ratio, result) of one backend."""
    ratio = res.http / res.raw if res.raw else float("nan")
    rows = [
        ("batch ingest over HTTP (events/s)", f"{res.http:,.0f}", ">= 50% of raw", f"{ratio:.2f}",
         _miss(ratio, 0.5, "", lower_is_better=False) if res.http_runs else "-"),
        (f"raw backend write (events/s, {res.backend})", f"{res.raw:,.0f}", "-", "1.00", "-"),
    ]
    if res.latency_ms:
        has_target = res.backend in ("postgresql", "kafka")
        for p in (50, 95, 99):
            target = "< 10 ms" if p == 95 and has_target else "-"
            verdict = _miss(res.latency_ms[95], 10.0, " ms", lower_is_better=True) if target != "-" else "-"
            rows.append((f"single-event p{p} at {args.rate:.0f}/s (ms)", f"{res.latency_ms[p]:.2f}", target, "",
                         verdict))
        rows.append(("  single-event p50/p95, one client, one at a time (ms)",
                     f"{res.unloaded_ms[50]:.2f}/{res.unloaded_ms[95]:.2f}", "-", "", "-"))
        rows.append((f"single events sustained (events/s; CPU/request: web {res.web_cpu_ms:.1f} ms, "
                     f"client {res.client_cpu_ms:.1f} ms)",
                     f"{res.achieved_rate:.0f}", f"{args.rate:.0f}", f"{res.achieved_rate / args.rate:.2f}",
                     _miss(res.achieved_rate, args.rate * 0.98, "/s", lower_is_better=False)))
        rows.append(("  same, from scheduled send (p95/p99 ms)",
                     f"{res.sched_latency_ms[95]:.2f}/{res.sched_latency_ms[99]:.2f}", "-", "",
                     f"{res.late_sends} of {res.singles} sends >1 ms late"))
        rows.append((f"worker RSS after {res.events_ingested:,} events (MB)", f"{res.rss_after_mb:.0f}",
                     "< 300 MB", "", _miss(res.rss_after_mb, 300.0, " MB", lower_is_better=True)))
        rows.append(("  worker RSS warm / peak (MB)", f"{res.rss_before_mb:.0f} / {res.hwm_mb:.0f}", "-", "", "-"))
    return rows


def print_table(res: Result, args: argparse.Namespace) -> None:
    """A fixed-width table of one backend."""
    sup.print_rows(f"\n== {res.backend}: http runs {[round(x) for x in res.http_runs]}, raw runs "
                   f"{[round(x) for x in res.raw_runs]} (median of each)",
                   report(res, args), res.cpu)


def print_markdown(results: Sequence[Result], args: argparse.Namespace) -> None:
    """All backends as one Markdown table (for docs/performance.md)."""
    sup.print_markdown([(res.backend, report(res, args)) for res in results])


def machine() -> str:
    """One line about the machine."""
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    return (f"{os.cpu_count()} CPUs ({model}), {mem_kb / 1024 / 1024:.1f} GiB RAM, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="sqlite,postgresql,kafka")
    ap.add_argument("--batch-requests", type=int, default=100, help="requests of 1,000 events per throughput run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4, help="client threads (and raw writers) for batches")
    ap.add_argument("--rate", type=float, default=500.0, help="single events per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of paced single events")
    ap.add_argument("--latency-threads", type=int, default=16)
    ap.add_argument("--unloaded", type=int, default=1000, help="single events sent one at a time by one client")
    ap.add_argument("--rss-events", type=int, default=1_000_000, help="events ingested before reading RSS")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    ap.add_argument("--server-threads", type=int, default=8, help="gunicorn threads per worker")
    ap.add_argument("--raw-only", action="store_true", help="only the raw baselines (no web process)")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke check")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch_requests, args.duration, args.rss_events, args.unloaded = 10, 2.0, 30_000, 200
    return args


def _interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM tears down like Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    """Run every backend asked for and print the figures."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    _say(f"machine: {machine()}")
    _say(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    results = []
    try:
        for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
            results.append(run_backend(name, args))
            print_table(results[-1], args)
    except KeyboardInterrupt:
        _say("interrupted: torn down")
        return 130
    print_markdown(results, args)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
