"""Schema validation benchmark: per-event validation cost, its share of HTTP batch ingest, registry lookups/s.

Prints figures; asserts nothing about time. See bench/README.md and docs/performance.md ("Schema validation").
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _support as sup
import httpx
import orjson

from app.bus.registry import avro_encode, parse_schema, validator_for
from app.bus.registry.validators import compile_validator

logger = logging.getLogger("bench.validate")
BATCH = 1000
V1 = "application/vnd.schemaregistry.v1+json"

# A typical 20-field business event, as JSON Schema (draft 7) and as an Avro record.
_FIELDS: list[tuple[str, dict[str, Any], Any]] = [
    ("order_id", {"type": "string", "minLength": 1, "maxLength": 64}, "string"),
    ("customer_id", {"type": "string", "pattern": "^c-[0-9]+$"}, "string"),
    ("amount_cents", {"type": "integer", "minimum": 0}, "long"),
    ("currency", {"enum": ["EUR", "USD", "GBP"]},
     {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD", "GBP"]}),
    ("status", {"enum": ["created", "paid", "shipped"]},
     {"type": "enum", "name": "Status", "symbols": ["created", "paid", "shipped"]}),
    ("quantity", {"type": "integer", "minimum": 1, "maximum": 1000}, "int"),
    ("unit_price", {"type": "number", "minimum": 0}, "double"),
    ("discount", {"type": "number", "minimum": 0, "maximum": 1}, "double"),
    ("gift", {"type": "boolean"}, "boolean"),
    ("express", {"type": "boolean"}, "boolean"),
    ("channel", {"type": "string"}, "string"),
    ("country", {"type": "string", "minLength": 2, "maxLength": 2}, "string"),
    ("city", {"type": "string"}, "string"),
    ("postcode", {"type": "string"}, "string"),
    ("created_ms", {"type": "integer"}, {"type": "long", "logicalType": "timestamp-millis"}),
    ("updated_ms", {"type": "integer"}, {"type": "long", "logicalType": "timestamp-millis"}),
    ("note", {"type": ["string", "null"]}, ["null", "string"]),
    ("coupon", {"type": ["string", "null"]}, ["null", "string"]),
    ("warehouse", {"type": "integer"}, "int"),
    ("priority", {"type": "integer", "minimum": 0, "maximum": 9}, "int"),
]
JSON_SCHEMA = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Order", "type": "object",
               "required": [name for name, _, _ in _FIELDS],
               "properties": {name: spec for name, spec, _ in _FIELDS}}
AVRO_SCHEMA = {"type": "record", "name": "Order", "namespace": "bench",
               "fields": [{"name": name, "type": avro} for name, _, avro in _FIELDS]}
SCHEMAS = {"json": ("JSON", JSON_SCHEMA), "avro": ("AVRO", AVRO_SCHEMA)}


def order(seq: int) -> dict[str, Any]:
    """One event's data, valid for both schemas."""
    return {"order_id": f"o-{seq:012d}", "customer_id": f"c-{seq % 997}", "amount_cents": seq % 100_000,
            "currency": "EUR", "status": "paid", "quantity": 1 + seq % 5, "unit_price": 19.99, "discount": 0.1,
            "gift": seq % 2 == 0, "express": False, "channel": "web", "country": "DE", "city": "Berlin",
            "postcode": "10115", "created_ms": 1_700_000_000_000 + seq, "updated_ms": 1_700_000_000_500 + seq,
            "note": None, "coupon": "SPRING" if seq % 3 == 0 else None, "warehouse": 3, "priority": seq % 10}


def _say(msg: str) -> None:
    print(msg, flush=True)  # a benchmark prints its figures


# -- in-process: what one event costs ---------------------------------------------------------------
def _per_call_us(func: Callable[[Any], Any], items: Sequence[Any], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for item in items:
            func(item)
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


def micro(count: int) -> dict[str, float]:
    """µs per event of the publish hook's per-event work (parse the data + validate), per schema type."""
    payloads = [orjson.dumps(order(i)) for i in range(count)]
    out: dict[str, float] = {"orjson.loads alone": _per_call_us(orjson.loads, payloads)}
    for kind, (schema_type, schema) in SCHEMAS.items():
        parsed = parse_schema(schema_type, json.dumps(schema))
        t0 = time.perf_counter()
        compile_validator(parsed)
        out[f"{kind}: compile validator (ms, once per schema)"] = (time.perf_counter() - t0) * 1000
        validate = validator_for(parsed)
        out[f"{kind}: loads + validate"] = _per_call_us(lambda raw, v=validate: v(orjson.loads(raw)), payloads)
        if schema_type == "AVRO":
            framed = [avro_encode(parsed, order(i)) for i in range(min(count, 2000))]
            from app.bus.registry import avro_decode

            out["avro: decode wire payload (reads)"] = _per_call_us(lambda b, p=parsed: avro_decode(p, b), framed)
    return out


def pipeline(args: argparse.Namespace) -> dict[str, float]:
    """µs per event of a whole batch request in process (Flask test client, SQLite), the best of many requests.

    The best-of figure filters out other processes' load, which the HTTP figures on a shared box cannot.
    """
    from tests.support.apps import ADMIN_PASSWORD, build_app, login, new_tenant

    seq = itertools.count()
    with tempfile.TemporaryDirectory(prefix="bench-validate-pipeline-") as tmp:
        app = build_app(f"sqlite:///{tmp}/bus.db")
        client = app.test_client()
        tenant = new_tenant(client, login(client, "admin", ADMIN_PASSWORD))
        headers = tenant.headers("all")
        for kind, (schema_type, schema) in SCHEMAS.items():
            client.post(f"/registry/subjects/bench-{kind}/versions", headers=headers,
                        json={"schema": json.dumps(schema), "schemaType": schema_type})
        client.post("/api/v1/streams", json={"name": sup.STREAM, "partitions": 3}, headers=headers)
        best = {"none": float("inf"), "json": float("inf"), "avro": float("inf")}
        for _ in range(args.pipeline_runs):
            for mode in best:
                client.patch(f"/api/v1/streams/{sup.STREAM}", headers=headers,
                              json={"schema_subject": None if mode == "none" else f"bench-{mode}"})
                for body in bodies(seq, 3):
                    t0 = time.perf_counter()
                    resp = client.post(f"/api/v1/streams/{sup.STREAM}/events", data=body, headers=headers,
                                       content_type="application/json")
                    elapsed = time.perf_counter() - t0
                    if resp.status_code != 201:
                        raise RuntimeError(resp.get_data(as_text=True)[:2000])
                    best[mode] = min(best[mode], elapsed / BATCH * 1e6)
        from app.extensions import db

        with app.app_context():
            db.engine.dispose()
    return best


# -- over HTTP: ingest with and without a subject, registry lookups ---------------------------------
def _registry(client: httpx.Client, method: str, path: str, body: Any = None) -> Any:
    resp = client.request(method, f"/registry{path}", content=None if body is None else json.dumps(body),
                          headers={"Content-Type": V1})
    sup.check(resp, 200, f"{method} {path}")
    return resp.json()


def setup_subjects(base_url: str, key: str) -> dict[str, int]:
    """Register both schemas; returns subject → schema id."""
    ids = {}
    with httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        for kind, (schema_type, schema) in SCHEMAS.items():
            ids[f"bench-{kind}"] = _registry(client, "POST", f"/subjects/bench-{kind}/versions",
                                             {"schema": json.dumps(schema), "schemaType": schema_type})["id"]
    return ids


def bind(base_url: str, key: str, subject: str | None) -> None:
    """Point the bench stream at a subject (or none)."""
    with httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        sup.check(client.patch(f"/api/v1/streams/{sup.STREAM}", json={"schema_subject": subject}), 200, "bind")


def bodies(seq: itertools.count, batches: int) -> list[bytes]:
    """Batch request bodies of BATCH keyed events."""
    out = []
    for _ in range(batches):
        events = []
        for _ in range(BATCH):
            n = next(seq)
            events.append({"type": "bench.order", "key": f"c-{n % 997}", "data": order(n)})
        out.append(orjson.dumps({"events": events}))
    return out


def lookups(base_url: str, key: str, ids: dict[str, int], seconds: float, threads: int) -> dict[str, float]:
    """Requests/s of the registry calls clients make: schema by id, latest version, lookup of a schema."""
    subject = "bench-avro"
    lookup_body = json.dumps({"schema": json.dumps(AVRO_SCHEMA)})
    calls = {
        "GET /schemas/ids/{id}": ("GET", f"/registry/schemas/ids/{ids[subject]}", None),
        "GET /subjects/{s}/versions/latest": ("GET", f"/registry/subjects/{subject}/versions/latest", None),
        "POST /subjects/{s} (lookup)": ("POST", f"/registry/subjects/{subject}", lookup_body),
    }
    out = {}
    for name, (method, path, body) in calls.items():
        clients = [httpx.Client(base_url=base_url, timeout=30,
                                headers={"Authorization": f"Bearer {key}", "Content-Type": V1}) for _ in range(threads)]
        done = [0] * threads
        deadline = time.perf_counter() + seconds

        def work(i: int, method: str = method, path: str = path, body: str | None = body,
                 clients: list[httpx.Client] = clients, done: list[int] = done, deadline: float = deadline) -> None:
            while time.perf_counter() < deadline:
                sup.check(clients[i].request(method, path, content=body), 200, path)
                done[i] += 1

        t0 = time.perf_counter()
        sup.run_threads(threads, work)
        out[name] = sum(done) / (time.perf_counter() - t0)
        for c in clients:
            c.close()
    return out


def over_http(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """Batch ingest events/s unbound vs bound to each subject (alternating runs), and lookups/s."""
    from tests.support.services import free_port

    res: dict[str, Any] = {"runs": {"none": [], "json": [], "avro": []}}
    seq = itertools.count()
    with tempfile.TemporaryDirectory(prefix=f"bench-validate-{backend}-") as tmp, \
            sup.backend_env(backend, Path(tmp)) as be:
        _say(f"[{backend}] migrating and initialising")
        sup.migrate_and_init(be)
        with sup.web_server(be, free_port(), args.workers, args.server_threads) as server:
            key = sup.provision(server.base_url, be.admin_password)
            ids = setup_subjects(server.base_url, key)
            for subject in (None, "bench-json", "bench-avro"):  # warm every path (and the validator caches)
                bind(server.base_url, key, subject)
                sup.post_batches(server.base_url, key, bodies(seq, 4), BATCH, args.threads)
            meters = {mode: sup.CpuMeter(lambda: [server.proc.pid, *server.worker_pids()])
                      for mode in res["runs"]}
            for run in range(args.runs):
                for mode in ("none", "json", "avro"):  # alternating: each mode sees the same machine state
                    bind(server.base_url, key, None if mode == "none" else f"bench-{mode}")
                    batch = bodies(seq, args.batch_requests)
                    with meters[mode].measure():
                        rate = sup.post_batches(server.base_url, key, batch, BATCH, args.threads)
                    res["runs"][mode].append(rate)
                _say(f"[{backend}] run {run + 1}: " + ", ".join(
                    f"{m} {r[-1]:,.0f} ev/s" for m, r in res["runs"].items()))
            res["cpu"] = {mode: m.summary() for mode, m in meters.items()}
            res["web_us"] = {mode: m.totals.get("web", 0.0) * 1e6 / (len(res["runs"][mode]) * args.batch_requests
                                                                     * BATCH) for mode, m in meters.items()}
            lookup_meter = sup.CpuMeter(lambda: [server.proc.pid, *server.worker_pids()])
            with lookup_meter.measure():
                res["lookups"] = lookups(server.base_url, key, ids, args.lookup_seconds, args.threads)
            res["cpu"]["lookups"] = lookup_meter.summary()
    return res


def report(backend: str, res: dict[str, Any]) -> None:
    """Medians, the overhead of validation, and lookups/s."""
    med = {mode: statistics.median(runs) for mode, runs in res["runs"].items()}
    _say(f"\n[{backend}] batch ingest over HTTP (median events/s) and validation overhead (target < 20%):")
    for mode in ("json", "avro"):
        overhead = (med["none"] / med[mode] - 1) * 100  # extra time per event, relative to no validation
        verdict = "pass" if overhead < 20 else "MISS"
        _say(f"  | {backend} | {mode} | {med['none']:,.0f} | {med[mode]:,.0f} | +{overhead:.1f}% | {verdict} |")
    _say(f"[{backend}] web CPU per event: " + ", ".join(f"{m} {us:.1f} µs" for m, us in res["web_us"].items()))
    _say(f"[{backend}] registry requests/s ({', '.join(f'{k}: {v:,.0f}' for k, v in res['lookups'].items())})")
    for phase, summary in res["cpu"].items():
        _say(f"[{backend}] cpu during {phase}: {summary}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql, kafka")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch-requests", type=int, default=40, help="requests of 1,000 events per run and mode")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--server-threads", type=int, default=8)
    p.add_argument("--lookup-seconds", type=float, default=5.0)
    p.add_argument("--micro-events", type=int, default=20_000)
    p.add_argument("--pipeline-runs", type=int, default=15, help="alternating in-process runs of 3 batches")
    p.add_argument("--micro-only", action="store_true", help="only the in-process figures")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke check")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.batch_requests, args.lookup_seconds, args.micro_events = 1, 5, 1.0, 2000
        args.pipeline_runs = 2
    return args


def _interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM tears down like Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    """Run the in-process figures, then each backend over HTTP."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    _say(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    _say(f"per-event cost, in process ({args.micro_events:,} events of {len(orjson.dumps(order(0)))} bytes):")
    for name, value in micro(args.micro_events).items():
        _say(f"  {name}: {value:.2f}{'' if '(ms' in name else ' µs/event'}")
    if args.micro_only:
        return 0
    best = pipeline(args)
    _say(f"whole 1,000-event request in process (SQLite; fastest of {args.pipeline_runs * 3} per mode, "
         "modes alternating), µs/event:")
    for mode in ("json", "avro"):
        _say(f"  none {best['none']:.1f}, {mode} {best[mode]:.1f}: +{(best[mode] / best['none'] - 1) * 100:.1f}%")
    try:
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            report(backend, over_http(backend, args))
    except KeyboardInterrupt:
        _say("interrupted: torn down")
        return 130
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
