"""Delivery benchmark: publish-to-delivered webhook throughput and latency, against a plain client and the naive design.

Prints figures; asserts nothing about time. See bench/README.md and docs/performance.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _deliver_support as ds
import _support as sup
import httpx
import orjson

BATCH = 1000
DATA_BYTES = 200
EVENT_TYPE = "bench.order.created"


# -- workload ---------------------------------------------------------------------------------------
def make_event(seq: int) -> dict[str, Any]:
    """One keyed event with about DATA_BYTES of JSON data, its send time a placeholder (ds.stamp fills it)."""
    data = {"order_id": f"o-{seq:012d}", "customer": f"customer-{seq % 997:04d}", "amount_cents": seq % 100_000,
            "sent_ns": ds.SENT_PLACEHOLDER, "note": ""}
    data["note"] = "x" * max(0, DATA_BYTES - len(orjson.dumps(data)))
    return {"type": EVENT_TYPE, "key": data["customer"], "data": data}


class Seq:
    """Hands out sequence numbers, so every event of a run is distinct."""

    def __init__(self) -> None:
        self.next = 0

    def bodies(self, events: int, per_body: int) -> list[bytes]:
        """Request bodies ``{"events": [...]}`` of ``per_body`` events each."""
        first, self.next = self.next, self.next + events
        return [orjson.dumps({"events": [make_event(first + b + i) for i in range(per_body)]})
                for b in range(0, events, per_body)]


def plain_bodies(sample: str, count: int) -> list[tuple[str, bytes]]:
    """``count`` copies of a webhook body the bus delivered, each with a fresh id (same size, same shape)."""
    doc = orjson.loads(sample)
    old = f'"id":"{doc["id"]}"'
    out = []
    for _ in range(count):
        new_id = str(uuid.uuid4())
        out.append((new_id, sample.replace(old, f"\"id\":\"{new_id}\"").encode()))
    return out


# -- results ----------------------------------------------------------------------------------------
@dataclass
class Result:
    """Figures of one backend."""

    backend: str
    bus_runs: list[float] = field(default_factory=list)
    publish_runs: list[float] = field(default_factory=list)
    plain_runs: list[float] = field(default_factory=list)
    plain_http1_runs: list[float] = field(default_factory=list)  # (a'): the bus's HTTP client, nothing else
    naive_runs: list[float] = field(default_factory=list)
    latency_ms: dict[int, float] = field(default_factory=dict)  # each percentile's median over the latency runs
    latency_runs: list[dict[int, float]] = field(default_factory=list)
    latency_max_ms: float = 0.0
    latency_rate: float = 0.0  # events/s actually published in the latency phase
    low_latency_ms: dict[int, float] = field(default_factory=dict)  # at --low-rate: no queue, the floor
    duplicates: int = 0
    body_bytes: int = 0
    cpu: dict[str, str] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms per delivered event, by who

    @staticmethod
    def median(runs: Sequence[float]) -> float:
        """Median, NaN when nothing ran."""
        return statistics.median(runs) if runs else float("nan")


_say = sup.say


def _timeline(args: argparse.Namespace, what: str, rec: ds.Receiver) -> None:
    """With --timeline: the run's deliveries/s in 250-ms steps (ramp-up, steady state, tail)."""
    if args.timeline:
        steps, middle = ds.timeline(rec.dump()["received_ns"])
        _say(f"  {what}: delivered/s every 250 ms {steps}; over the middle 80%: {middle:,.0f}/s")


def delivered_rate(st: dict[str, int]) -> float:
    """Webhooks/s at the receiver from its first to its last request."""
    span = (st["last_ns"] - st["first_ns"]) / 1e9
    return (st["received"] - 1) / span if span > 0 else float("nan")


# -- one backend ------------------------------------------------------------------------------------
def create_subscription(base_url: str, key: str, url: str, in_flight: int) -> tuple[str, str]:
    """An unordered subscription of the bench stream to ``url``; (id, signing secret)."""
    resp = httpx.post(base_url + "/api/v1/subscriptions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json={"stream": sup.STREAM, "url": url, "ordered": False, "max_in_flight": in_flight})
    body = sup.check(resp, 201, "create subscription").json()
    return body["id"], body["secret"]


def run_backend(name: str, args: argparse.Namespace) -> Result:
    """Set up one backend from scratch, measure it, tear it all down."""
    res = Result(name)
    seq = Seq()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-deliver-{name}-")))
        if args.log_dir:
            stack.callback(_keep_logs, tmp, args.log_dir / name)  # runs after the processes stopped
        be = stack.enter_context(sup.backend_env(name, tmp))
        redis_url = stack.enter_context(ds.redis_database())
        be.env.update(REDIS_URL=redis_url, WEBHOOK_ALLOW_PRIVATE="true")
        _say(f"[{name}] migrating and initialising ({be.env['EVENT_LOG_URL']}, {be.database_url.split('@')[-1]}, "
             f"Redis {redis_url})")
        sup.migrate_and_init(be)
        rec = stack.enter_context(ds.receiver_process(tmp))
        from tests.support.services import free_port

        server = stack.enter_context(sup.web_server(be, free_port(), args.workers, args.server_threads))
        key = sup.provision(server.base_url, be.admin_password)
        _, secret = create_subscription(server.base_url, key, rec.url, args.in_flight)
        workers = [stack.enter_context(ds.process(
            [str(sup.BIN / "celery"), "-A", "workers.celery_app", "worker", "-l", args.worker_log_level,
             "-c", str(args.worker_concurrency), "-n", f"bench-bus{i}@%h"], be.env, tmp / f"worker{i}.log"))
            for i in range(args.bus_workers)]
        naive: dict[str, Any] = {}
        parties = ds.Parties({"web": lambda: [server.proc.pid], "worker": lambda: [w.pid for w in workers],
                              "receiver": lambda: [rec.proc.pid], "naive": lambda: naive.get("pids", [])})

        def log_tail(path: Path) -> str:
            return path.read_text(errors="replace")[-3000:] if path.exists() else ""

        try:
            sup.post_batches(server.base_url, key, seq.bodies(BATCH, BATCH), BATCH, 1)
            rec.wait_unique(BATCH, timeout_s=120)  # the worker started, took its leases and delivered
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nworker log:\n{log_tail(tmp / 'worker0.log')}") from None
        if args.bus_workers > 1:
            time.sleep(5.0)  # two refreshes (2 s each): the partition leases spread over every dispatcher
        sample = rec.sample()
        res.body_bytes = len(sample["body"].encode())
        _say(f"[{name}] warm: worker delivering; webhook body {res.body_bytes} bytes; headers "
             f"{', '.join(sorted(h.lower() for h in sample['headers']))}")
        for run in range(args.runs):
            _bus_run(res, args, rec, server.base_url, key, seq, parties, workers[0].pid)
            _plain_run(res, args, rec, sample["body"], secret, parties)
            _say(f"[{name}] run {run + 1}: bus {res.bus_runs[-1]:,.0f} delivered/s (published at "
                 f"{res.publish_runs[-1]:,.0f}/s), plain client {res.plain_runs[-1]:,.0f}/s, "
                 f"plain http1 client {res.plain_http1_runs[-1]:,.0f}/s")
        res.low_latency_ms, _, _ = _latency_phase(res.backend, args, rec, server.base_url, key, seq, parties,
                                                  args.low_rate, 1, args.low_duration, workers[0].pid)
        rates = []
        for _ in range(args.latency_runs):  # one run's p95 swings with the host's noise: report the median
            pct, worst, rate = _latency_phase(res.backend, args, rec, server.base_url, key, seq, parties, args.rate,
                                              args.latency_batch, args.duration, workers[0].pid)
            res.latency_runs.append(pct)
            res.latency_max_ms = max(res.latency_max_ms, worst)
            rates.append(rate)
        res.latency_ms = {p: statistics.median(run[p] for run in res.latency_runs) for p in (50, 95, 99)}
        res.latency_rate = statistics.median(rates)
        naive_cmd = [str(sup.BIN / "celery"), "-A", "bench.naive_celery", "worker", "-l", "WARNING", "--pool",
                     "threads", "-c", str(args.naive_threads), "-Q", "bench_naive", "-n", "bench-naive@%h"]
        naive_proc = stack.enter_context(ds.process(naive_cmd, {**os.environ, "BENCH_NAIVE_BROKER": redis_url},
                                                    tmp / "naive.log"))
        naive["pids"] = [naive_proc.pid]
        try:
            _naive_runs(res, args, rec, redis_url, sample["body"], secret, parties)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nnaive worker log:\n{log_tail(tmp / 'naive.log')}") from None
        res.cpu = {phase: parties.summary(phase) for phase in parties.wall}
        bus_events, naive_events = args.runs * args.events, args.runs * args.naive_events
        res.cpu_ms = {
            "bus worker": parties.seconds("bus throughput", "worker") * 1000 / bus_events,
            "receiver (bus)": parties.seconds("bus throughput", "receiver") * 1000 / bus_events,
            "plain client": parties.seconds("plain client", "bench") * 1000 / bus_events,
            "receiver (plain)": parties.seconds("plain client", "receiver") * 1000 / bus_events,
            "plain http1 client": parties.seconds("plain http1 client", "bench") * 1000 / bus_events,
            "naive worker": parties.seconds("naive", "naive") * 1000 / naive_events,
        }
        _say(f"[{name}] tearing down")
    return res


def _keep_logs(tmp: Path, dest: Path) -> None:
    """Copy the processes' logs (gunicorn, worker, receiver, naive worker) out of the temporary directory."""
    dest.mkdir(parents=True, exist_ok=True)
    for log in tmp.glob("*.log"):
        shutil.copy(log, dest / log.name)


def _bus_run(res: Result, args: argparse.Namespace, rec: ds.Receiver, base_url: str, key: str, seq: Seq,
             parties: ds.Parties, worker_pid: int) -> None:
    """Publish ``--events`` in 1,000-event batches as fast as possible; delivered/s at the receiver."""
    rec.reset()
    bodies = [ds.stamp(b) for b in seq.bodies(args.events, BATCH)]
    with ExitStack() as stack:
        if args.profile:
            out = args.profile / f"{res.backend}-{args.profile_mode}-run{len(res.bus_runs) + 1}"
            stack.enter_context(ds.py_spy(worker_pid, out, args.profile_mode))
        with parties.measure("bus throughput"):
            res.publish_runs.append(sup.post_batches(base_url, key, bodies, BATCH, args.publish_threads))
            st = rec.wait_unique(args.events, timeout_s=max(120.0, args.events / 50))
    res.bus_runs.append(delivered_rate(st))
    _timeline(args, "bus", rec)
    res.duplicates += st["received"] - st["unique"]


def _plain_run(res: Result, args: argparse.Namespace, rec: ds.Receiver, sample: str, secret: str,
               parties: ds.Parties) -> None:
    """(a) the same bodies, signed, from a plain aiohttp client with the subscription's concurrency; then (a')
    the same from the bus's own HTTP/1.1 client (``http1``) alone."""
    for client, runs, phase in (("aiohttp", res.plain_runs, "plain client"),
                                ("http1", res.plain_http1_runs, "plain http1 client")):
        rec.reset()
        bodies = plain_bodies(sample, args.events)
        with parties.measure(phase):
            ds.plain_clients(rec.url, bodies, secret, args.in_flight, client, args.plain_processes)
            st = rec.wait_unique(len(bodies), timeout_s=60)
        runs.append(delivered_rate(st))
        _timeline(args, f"plain {client}", rec)


def _latency_phase(backend: str, args: argparse.Namespace, rec: ds.Receiver, base_url: str, key: str, seq: Seq,
                   parties: ds.Parties, rate: float, batch: int, duration: float,
                   worker_pid: int) -> tuple[dict[int, float], float, float]:
    """``batch``-event requests paced at ``rate`` events/s: percentiles and max (ms), the rate achieved.

    Per event: the receiver's clock at arrival minus the publisher's just before the request was sent.
    """
    rec.reset()
    count = int(rate * duration)
    bodies = seq.bodies(count, batch)
    with ExitStack() as stack:
        if args.profile:
            out = args.profile / f"{backend}-{args.profile_mode}-latency-{rate:.0f}"
            stack.enter_context(ds.py_spy(worker_pid, out, args.profile_mode))
        with parties.measure(f"latency at {rate:,.0f}/s"):
            publish_s: list[float] = []
            req_rate = ds.paced_publish(base_url, key, bodies, rate / batch, args.latency_threads, publish_s)
            rec.wait_unique(count, timeout_s=120)
    dump = rec.dump()
    first: dict[str, float] = {}
    for wid, got, sent in zip(dump["ids"], dump["received_ns"], dump["sent_ns"], strict=True):
        first.setdefault(wid, (got - sent) / 1e9)  # a duplicate's later arrival is not its delivery
    lat = list(first.values())
    pct, worst = sup.percentiles_ms(lat), max(lat) * 1000
    pub = sup.percentiles_ms(publish_s)
    _say(f"[{backend}] latency at {req_rate * batch:,.0f} events/s ({batch}-event requests): p50 {pct[50]:.1f} ms, "
         f"p95 {pct[95]:.1f} ms, p99 {pct[99]:.1f} ms, max {worst:.0f} ms; the publish requests alone: p50 "
         f"{pub[50]:.1f} ms, p95 {pub[95]:.1f} ms, p99 {pub[99]:.1f} ms")
    return pct, worst, req_rate * batch


def _naive_runs(res: Result, args: argparse.Namespace, rec: ds.Receiver, broker: str, sample: str, secret: str,
                parties: ds.Parties) -> None:
    """(b) one Celery task per event through Redis to the naive worker; delivered/s at the receiver."""
    rec.reset()
    ds.enqueue_naive(broker, rec.url, plain_bodies(sample, 100), secret)
    rec.wait_unique(100, timeout_s=120)  # the worker is up and its connections are open
    for run in range(args.runs):
        rec.reset()
        bodies = plain_bodies(sample, args.naive_events)
        with parties.measure("naive"):
            enq = ds.enqueue_naive(broker, rec.url, bodies, secret)
            st = rec.wait_unique(len(bodies), timeout_s=max(120.0, args.naive_events / 20))
        res.naive_runs.append(delivered_rate(st))
        _say(f"[{res.backend}] naive run {run + 1}: {res.naive_runs[-1]:,.0f} delivered/s (enqueued at {enq:,.0f}/s)")


# -- report -----------------------------------------------------------------------------------------
def _verdict(value: float, limit: float, unit: str, lower_is_better: bool) -> str:
    ok = value < limit if lower_is_better else value >= limit
    if ok:
        return "pass"
    return f"MISS by {abs(value - limit):.3g}{unit} ({abs(value / limit - 1) * 100:.0f}%)"


def report(res: Result, args: argparse.Namespace) -> list[tuple[str, str, str, str, str]]:
    """Rows (figure, value, target, ratio, result) of one backend."""
    bus, plain, naive = (res.median(r) for r in (res.bus_runs, res.plain_runs, res.naive_runs))
    to_plain, to_naive = bus / plain, bus / naive
    pair_ratios = [b / p for b, p in zip(res.bus_runs, res.plain_runs, strict=True)]
    plain_http1 = res.median(res.plain_http1_runs)
    http1_ratios = [b / p for b, p in zip(res.bus_runs, res.plain_http1_runs, strict=True)]
    rows = [
        (f"bus ({args.bus_workers} worker process{'es' if args.bus_workers > 1 else ''}, {args.partitions} "
         f"partitions): publish-to-delivered (delivered/s)", f"{bus:,.0f}",
         ">= 70% of (a)", f"{to_plain:.2f}", _verdict(to_plain, 0.7, "", lower_is_better=False)),
        # The host's speed drifts over seconds; each bus run is followed at once by its plain run, so the
        # ratio within each pair is less exposed to the drift than the ratio of the two medians above.
        ("  bus / plain of each run pair (their median)", ", ".join(f"{r:.2f}" for r in pair_ratios),
         "-", f"{statistics.median(pair_ratios):.2f}", "-"),
        ("bus vs (b) naive", f"{to_naive:.1f}x", ">= 10x", f"{to_naive:.1f}",
         _verdict(to_naive, 10.0, "x", lower_is_better=False)),
        (f"(a) plain aiohttp client, {args.in_flight} in flight{_procs(args)} (delivered/s)", f"{plain:,.0f}", "-",
         "1.00", "-"),
        (f"(a') plain client on the bus's own HTTP/1.1 sender (http1), {args.in_flight} in flight{_procs(args)} "
         "(delivered/s)",
         f"{plain_http1:,.0f}", "-", f"{plain_http1 / plain:.2f}", "-"),
        ("  bus / (a') of each run pair (their median)", ", ".join(f"{r:.2f}" for r in http1_ratios), "-",
         f"{statistics.median(http1_ratios):.2f}", "-"),
        (f"(b) naive: a Celery task per event, {args.naive_threads} threads (delivered/s)", f"{naive:,.0f}", "-",
         f"{naive / plain:.2f}", "-"),
        ("  publish rate during the bus runs (events/s)", f"{res.median(res.publish_runs):,.0f}", "-", "", "-"),
    ]
    for p in (50, 95, 99):
        target = "< 50 ms" if p == 95 else "-"
        verdict = _verdict(res.latency_ms[95], 50.0, " ms", lower_is_better=True) if p == 95 else "-"
        rows.append((f"publish-to-delivered p{p} at {args.rate:,.0f} events/s (ms, median of runs)",
                     f"{res.latency_ms[p]:.1f}",
                     target, "", verdict))
    rows.append((f"  p95 of each of the {len(res.latency_runs)} latency runs (ms; the median above)",
                 ", ".join(f"{run[95]:.1f}" for run in res.latency_runs), "-", "", "-"))
    rows.append(("  latency phase: published (events/s); max (ms)",
                 f"{res.latency_rate:,.0f}; {res.latency_max_ms:.0f}", "-", "", "-"))
    low = res.low_latency_ms
    rows.append((f"  p50/p95/p99 at {args.low_rate:,.0f} events/s, one per request (ms)",
                 f"{low[50]:.1f}/{low[95]:.1f}/{low[99]:.1f}", "-", "", "-"))
    rows.append(("  CPU per event (ms): " + ", ".join(res.cpu_ms),
                 "/".join(f"{v:.2f}" for v in res.cpu_ms.values()), "-", "", "-"))
    return rows


def _procs(args: argparse.Namespace) -> str:
    return f", {args.plain_processes} processes" if args.plain_processes > 1 else ""


def print_table(res: Result, args: argparse.Namespace) -> None:
    """A fixed-width table of one backend."""
    sup.print_rows(f"\n== {res.backend}: bus runs {[round(x) for x in res.bus_runs]}, plain "
                   f"{[round(x) for x in res.plain_runs]}, naive {[round(x) for x in res.naive_runs]} "
                   f"(median of each); {res.duplicates} duplicate deliveries",
                   report(res, args), res.cpu)


def print_markdown(results: Sequence[Result], args: argparse.Namespace) -> None:
    """All backends as one Markdown table (for docs/performance.md)."""
    sup.print_markdown([(res.backend, report(res, args)) for res in results])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="postgresql", help="postgresql and/or kafka (the event log)")
    ap.add_argument("--events", type=int, default=20_000, help="events per throughput run")
    ap.add_argument("--runs", type=int, default=5, help="throughput run pairs (bus, then plain)")
    ap.add_argument("--publish-threads", type=int, default=4)
    ap.add_argument("--in-flight", type=int, default=100, help="the subscription's max_in_flight")
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s in the latency phase")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of each latency run")
    ap.add_argument("--latency-runs", type=int, default=3, help="runs of the latency phase (median reported)")
    ap.add_argument("--latency-batch", type=int, default=10, help="events per publish request, latency phase")
    ap.add_argument("--latency-threads", type=int, default=8)
    ap.add_argument("--low-rate", type=float, default=100.0, help="events/s of the no-queue latency phase")
    ap.add_argument("--low-duration", type=float, default=5.0)
    ap.add_argument("--naive-events", type=int, default=5_000, help="events per naive run")
    ap.add_argument("--naive-threads", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    ap.add_argument("--server-threads", type=int, default=8, help="gunicorn threads per worker")
    # Two workers by default: one dispatcher process per core is how this 2-core machine is run, and the
    # figures of record (docs/performance.md) are measured so.
    ap.add_argument("--bus-workers", type=int, default=2,
                    help="`celery worker` processes (a dispatcher each; they share the partitions by lease)")
    ap.add_argument("--partitions", type=int, default=4,
                    help="partitions of the bench stream (a multiple of --bus-workers spreads them evenly)")
    ap.add_argument("--worker-concurrency", type=int, default=2, help="the bus worker's task pool")
    ap.add_argument("--worker-log-level", default="WARNING", help="DEBUG logs the dispatcher's batch timings")
    ap.add_argument("--log-dir", type=Path, help="keep the processes' logs here")
    ap.add_argument("--plain-processes", type=int,
                    help="processes of the plain clients (a) and (a'), sharing the bodies and the in-flight count "
                         "(default: as many as --bus-workers)")
    ap.add_argument("--timeline", action="store_true", help="print each throughput run's delivered/s every 250 ms")
    ap.add_argument("--profile", type=Path,
                    help="py-spy the bus worker during the throughput runs and latency phases into this dir")
    ap.add_argument("--profile-mode", choices=("wall", "gil", "cpu"), default="wall",
                    help="what py-spy samples: every thread (wall), the GIL holder, or threads on a CPU")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke check")
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.runs, args.duration, args.low_duration, args.naive_events = 3_000, 1, 2.0, 2.0, 500
        args.latency_runs = 1
    if args.plain_processes is None:  # the plain clients get the processes the bus gets
        args.plain_processes = args.bus_workers
    return args


def _interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM tears down like Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    """Run every backend asked for and print the figures."""
    from ingest import machine

    args = parse_args(argv)
    sup.PARTITIONS = args.partitions  # read by sup.provision when it creates the stream
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    _say(f"machine: {machine()}")
    _say(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    results = []
    t0 = time.monotonic()
    try:
        for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
            results.append(run_backend(name, args))
            print_table(results[-1], args)
    except KeyboardInterrupt:
        _say("interrupted: torn down")
        return 130
    print_markdown(results, args)
    _say(f"\ntotal {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
