"""Plumbing of the SQL event log: engines, prepared statements, row <-> Record, bulk writes."""
from __future__ import annotations

import io
import re
import time
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

from app.bus.envelope import Event, Record
from app.bus.log.sql_schema import EVENT_COLUMNS, events, log_partitions

# Batches this large go through COPY on PostgreSQL; smaller ones through one multi-row INSERT.
COPY_THRESHOLD = 50
SQLITE_BUSY_TIMEOUT_S = 30.0
WRITE_OPTION = "bus_write"  # execution option of connections that write (SQLite: BEGIN IMMEDIATE)

# Driver-level SQL for the hot path, built from our own column names only (no user input).
_QUOTED_COLUMNS = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
_SQLITE_INSERT = f"INSERT INTO events ({_QUOTED_COLUMNS}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"  # noqa: S608
_SQLITE_UPDATE_HEADS = (
    'UPDATE log_partitions SET next_offset = ?, last_ts_ms = ? WHERE stream_id = ? AND "partition" = ?'
)
_PG_INSERT = f"INSERT INTO events ({_QUOTED_COLUMNS}) VALUES %s"  # noqa: S608
_PG_COPY = f"COPY events ({_QUOTED_COLUMNS}) FROM STDIN"
# One round trip for all heads of an append, whatever the number of partitions it touched.
_PG_UPDATE_HEADS = (
    "UPDATE log_partitions AS lp SET next_offset = v.n, last_ts_ms = v.t "
    "FROM unnest(%(p)s::int[], %(n)s::bigint[], %(t)s::bigint[]) AS v(p, n, t) "
    'WHERE lp.stream_id = %(sid)s AND lp."partition" = v.p'
)
# COPY text format: tab-separated, backslash escapes, \N is NULL.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")

_lp, _ev = log_partitions.c, events.c
RECORD_COLUMNS = (
    _ev.partition, _ev.offset, _ev.ts_ms, _ev.id, _ev.type, _ev.source, _ev.time, _ev.subject,
    _ev.datacontenttype, _ev.dataschema, _ev.key, _ev.headers, _ev.data,
)
READ = (
    sa.select(*RECORD_COLUMNS)
    .where(_ev.stream_id == sa.bindparam("sid"), _ev.partition == sa.bindparam("p"), _ev.offset >= sa.bindparam("o"))
    .order_by(_ev.offset)
    .limit(sa.bindparam("n"))
)
WATERMARKS = (
    sa.select(_lp.partition, _lp.low, _lp.next_offset)
    .where(_lp.stream_id == sa.bindparam("sid"))
    .order_by(_lp.partition)
)
# The (stream_id, partition, ts_ms, offset) index answers this without touching the table.
_FIRST_AT_TIME = (
    sa.select(_ev.offset)
    .where(_ev.stream_id == sa.bindparam("sid"), _ev.partition == sa.bindparam("p"), _ev.ts_ms >= sa.bindparam("t"))
    .order_by(_ev.ts_ms, _ev.offset)
    .limit(1)
)
_HIGH = sa.select(_lp.next_offset).where(_lp.stream_id == sa.bindparam("sid"), _lp.partition == sa.bindparam("p"))


def wall_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def create_engines(url: str, pool_size: int) -> tuple[Engine, Engine, Engine, bool]:
    """(engine, reader, writer, is_postgresql) for a sqlite: or postgresql: URL."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(parsed, pool_size)
        reader = engine
    elif backend == "postgresql":
        # No pre-ping: it cost a round trip per append. A connection that died (database restart) fails
        # once, SQLAlchemy invalidates the pool, and the caller's retry gets a fresh connection.
        engine = sa.create_engine(parsed, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600)
        # Reads need no transaction: offsets below a committed head never change. Saves BEGIN/ROLLBACK.
        # A pool of its own whose connections are born in autocommit: the same engine with an
        # isolation_level option switched every connection on checkout and back on checkin, and psycopg2's
        # switch back is a round trip (~90 us here, paid by every read the dispatcher makes).
        reader = sa.create_engine(parsed, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600,
                                  isolation_level="AUTOCOMMIT")
    else:
        raise ValueError(f"the SQL event log supports sqlite and postgresql, not {backend!r}")
    return engine, reader, engine.execution_options(**{WRITE_OPTION: True}), backend == "postgresql"


def _sqlite_engine(url: sa.URL, pool_size: int) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    options: dict[str, Any] = {} if in_memory else {"pool_size": pool_size}
    # timeout= is sqlite3's busy timeout: wait for the write lock instead of failing at once.
    engine = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}, **options
    )

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy's recipe: the driver must not emit BEGIN itself, _on_begin does.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
        cur.execute("PRAGMA synchronous=FULL")  # an append is on disk when it returns
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that upgrades later fails with
        # SQLITE_BUSY, without waiting, when another writer got there first.
        immediate = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def to_records(stream: str, rows: Sequence[Any]) -> list[Record]:
    """Rows of RECORD_COLUMNS as Records."""
    out = []
    for p, off, ts, id_, type_, source, time_, subject, ct, schema, key, headers, data in rows:
        hdrs = orjson.loads(headers) if headers else {}
        out.append(Record(stream, p, off, ts, Event(type_, data, id_, source, time_, subject, ct, schema, key, hdrs)))
    return out


def event_row(sid: int, partition: int, offset: int, ts_ms: int, e: Event) -> tuple[Any, ...]:
    """An events row in EVENT_COLUMNS order."""
    headers = orjson.dumps(e.headers).decode() if e.headers else None
    return (sid, partition, offset, ts_ms, e.id, e.type, e.source, e.time, e.subject,
            e.datacontenttype, e.dataschema, e.key, headers, e.data)


def offset_for_time(conn: Connection, sid: int, partition: int, time_ms: int) -> int:
    """First offset with log time >= ``time_ms``, else the high watermark."""
    off = conn.scalar(_FIRST_AT_TIME, {"sid": sid, "p": partition, "t": time_ms})
    if off is None:
        off = conn.scalar(_HIGH, {"sid": sid, "p": partition})
    return int(off or 0)


def write_rows(conn: Connection, pg: bool, rows: list[tuple[Any, ...]]) -> None:
    """Insert event rows: executemany on SQLite; one multi-row INSERT or COPY on PostgreSQL."""
    if not pg:
        conn.exec_driver_sql(_SQLITE_INSERT, rows)
        return
    # The raw DBAPI cursor shares the connection, hence the transaction, of the SQLAlchemy one.
    cur = conn.connection.cursor()
    try:
        if len(rows) >= COPY_THRESHOLD:
            cur.copy_expert(_PG_COPY, io.StringIO("".join(map(_copy_line, rows))))
        else:
            from psycopg2.extras import execute_values

            execute_values(cur, _PG_INSERT, rows, page_size=len(rows))
    finally:
        cur.close()


def update_heads(conn: Connection, pg: bool, sid: int, heads: list[tuple[int, int, int]]) -> None:
    """Store (partition, next_offset, last_ts_ms) of the partitions an append touched."""
    if pg:
        p, n, t = (list(col) for col in zip(*heads, strict=True))
        conn.exec_driver_sql(_PG_UPDATE_HEADS, {"sid": sid, "p": p, "n": n, "t": t})
    else:
        conn.exec_driver_sql(_SQLITE_UPDATE_HEADS, [(n, t, sid, p) for p, n, t in heads])


def _copy_line(row: tuple[Any, ...]) -> str:
    """One row in COPY text format."""
    attrs = row[4:13]
    if _NEEDS_ESCAPE.search("".join([v for v in attrs if v is not None])) is None:
        line = "\t".join(["\\N" if v is None else v for v in attrs])
    else:  # rare; str.translate is too slow to run on every field of every row
        line = "\t".join(["\\N" if v is None else v.translate(_COPY_ESCAPES) for v in attrs])
    return f"{row[0]}\t{row[1]}\t{row[2]}\t{row[3]}\t{line}\t\\\\x{row[13].hex()}\n"
