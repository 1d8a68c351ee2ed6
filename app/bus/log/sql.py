"""The SQL event log on SQLAlchemy Core: SQLite (embedded default) and PostgreSQL (psycopg2)."""
from __future__ import annotations

import io
import logging
import time
from collections import defaultdict
from typing import Any, Sequence

import orjson
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

from app.bus.envelope import Event, Record
from app.bus.log.base import (
    MAX_PARTITIONS,
    InvalidOffset,
    InvalidPartition,
    InvalidPartitionCount,
    Position,
    StreamExists,
    StreamInfo,
    StreamNotFound,
    Watermark,
)
from app.bus.log.sql_groups import SqlGroupsMixin
from app.bus.log.sql_schema import EVENT_COLUMNS, events, group_offsets, log_partitions, log_streams
from app.bus.partitioner import RoundRobin, partition_for_key

logger = logging.getLogger(__name__)

# Batches this large go through COPY on PostgreSQL; smaller ones through one multi-row INSERT.
COPY_THRESHOLD = 50
# How long a stream's (id, partitions) is trusted for reads; appends re-check it in their transaction.
STREAM_CACHE_TTL_S = 1.0
SQLITE_BUSY_TIMEOUT_S = 30.0
_WRITE_OPTION = "bus_write"

_QUOTED_COLUMNS = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
_SQLITE_INSERT = f"INSERT INTO events ({_QUOTED_COLUMNS}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
_SQLITE_UPDATE_HEADS = 'UPDATE log_partitions SET next_offset = ?, last_ts_ms = ? WHERE stream_id = ? AND "partition" = ?'
_PG_INSERT = f"INSERT INTO events ({_QUOTED_COLUMNS}) VALUES %s"
_PG_COPY = f"COPY events ({_QUOTED_COLUMNS}) FROM STDIN"
# One round trip for all heads of an append, whatever the number of partitions it touched.
_PG_UPDATE_HEADS = (
    "UPDATE log_partitions AS lp SET next_offset = v.n, last_ts_ms = v.t "
    "FROM unnest(%(p)s::int[], %(n)s::bigint[], %(t)s::bigint[]) AS v(p, n, t) "
    'WHERE lp.stream_id = %(sid)s AND lp."partition" = v.p'
)
# COPY text format: backslash escapes; \N is NULL.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

_lp, _ls, _ev = log_partitions.c, log_streams.c, events.c
_LOCK_HEADS = (
    sa.select(_lp.partition, _lp.next_offset, _lp.last_ts_ms, _ls.partitions)
    .select_from(log_partitions.join(log_streams, _ls.id == _lp.stream_id))
    .where(_lp.stream_id == sa.bindparam("sid"), _lp.partition.in_(sa.bindparam("parts", expanding=True)))
    .order_by(_lp.partition)
    .with_for_update(of=log_partitions)
)
RECORD_COLUMNS = (
    _ev.partition, _ev.offset, _ev.ts_ms, _ev.id, _ev.type, _ev.source, _ev.time, _ev.subject,
    _ev.datacontenttype, _ev.dataschema, _ev.key, _ev.headers, _ev.data,
)
_READ = (
    sa.select(*RECORD_COLUMNS)
    .where(_ev.stream_id == sa.bindparam("sid"), _ev.partition == sa.bindparam("p"), _ev.offset >= sa.bindparam("o"))
    .order_by(_ev.offset)
    .limit(sa.bindparam("n"))
)
_FIRST_AT_TIME = (
    sa.select(_ev.offset)
    .where(_ev.stream_id == sa.bindparam("sid"), _ev.partition == sa.bindparam("p"), _ev.ts_ms >= sa.bindparam("t"))
    .order_by(_ev.ts_ms, _ev.offset)
    .limit(1)
)
_HIGH = sa.select(_lp.next_offset).where(_lp.stream_id == sa.bindparam("sid"), _lp.partition == sa.bindparam("p"))
_WATERMARKS = (
    sa.select(_lp.partition, _lp.low, _lp.next_offset).where(_lp.stream_id == sa.bindparam("sid")).order_by(_lp.partition)
)


class _StaleStream(Exception):
    """The cached (id, partitions) of a stream no longer matches the database."""


def wall_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def to_records(stream: str, rows: Sequence[Any]) -> list[Record]:
    """Rows of RECORD_COLUMNS as Records."""
    out = []
    for p, off, ts, id_, type_, source, time_, subject, ct, schema, key, headers, data in rows:
        event = Event(type_, data, id_, source, time_, subject, ct, schema, key, orjson.loads(headers) if headers else {})
        out.append(Record(stream, p, off, ts, event))
    return out


def _copy_line(row: tuple[Any, ...]) -> str:
    texts = ["\\N" if v is None else v.translate(_COPY_ESCAPES) for v in row[4:13]]
    return f"{row[0]}\t{row[1]}\t{row[2]}\t{row[3]}\t" + "\t".join(texts) + f"\t\\\\x{row[13].hex()}\n"


def _sqlite_engine(url: sa.URL, pool_size: int) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    options: dict[str, Any] = {} if in_memory else {"pool_size": pool_size}
    engine = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}, **options
    )

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy's recipe: the driver must not emit BEGIN itself, we do it in _on_begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # an append is on disk when it returns
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that upgrades later can fail with
        # SQLITE_BUSY without waiting, when another writer got there first.
        immediate = conn.get_execution_options().get(_WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class SqlEventLog(SqlGroupsMixin):
    """EventLog on a SQL database: offsets assigned per partition inside the appending transaction."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        parsed = sa.make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            self._engine = _sqlite_engine(parsed, pool_size)
            self._reader: Engine = self._engine
        elif backend == "postgresql":
            self._engine = sa.create_engine(parsed, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
            # Reads need no transaction: offsets below a committed head are immutable. Saves BEGIN/ROLLBACK.
            self._reader = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            raise ValueError(f"the SQL event log supports sqlite and postgresql, not {backend!r}")
        self._pg = backend == "postgresql"
        self._writer: Engine = self._engine.execution_options(**{_WRITE_OPTION: True})
        self._cache: dict[str, tuple[int, int, float]] = {}
        self._round_robin: defaultdict[str, RoundRobin] = defaultdict(RoundRobin)
        self._init_groups()

    def __repr__(self) -> str:
        return f"SqlEventLog({self._engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Release connections."""
        self._engine.dispose()

    # -- stream lookups -------------------------------------------------------------------------
    def _stream(self, stream: str, fresh: bool = False) -> tuple[int, int]:
        """(id, partitions) of a stream, from a short-lived cache; StreamNotFound if absent."""
        now = time.monotonic()
        hit = self._cache.get(stream)
        if hit is not None and not fresh and hit[2] > now:
            return hit[0], hit[1]
        with self._reader.connect() as conn:
            row = conn.execute(sa.select(_ls.id, _ls.partitions).where(_ls.name == stream)).first()
        if row is None:
            self._cache.pop(stream, None)
            raise StreamNotFound(stream)
        self._cache[stream] = (row[0], row[1], now + STREAM_CACHE_TTL_S)
        return row[0], row[1]

    def _partition(self, stream: str, partition: int) -> int:
        """The stream id, after checking the partition exists (re-reading the stream before refusing)."""
        sid, n = self._stream(stream)
        if not 0 <= partition < n:
            sid, n = self._stream(stream, fresh=True)
            if not 0 <= partition < n:
                raise InvalidPartition(f"{stream} has partitions 0..{n - 1}, not {partition}")
        return sid

    # -- stream admin ---------------------------------------------------------------------------
    def create_stream(self, stream: str, partitions: int, retention_ms: int | None = None) -> None:
        """Create a stream; StreamExists if it does."""
        if not stream or len(stream) > 300:
            raise ValueError("a stream name has 1 to 300 characters")
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidPartitionCount(f"partitions must be within 1..{MAX_PARTITIONS}")
        _check_retention(retention_ms)
        self._cache.pop(stream, None)
        try:
            with self._writer.begin() as conn:
                result = conn.execute(
                    log_streams.insert().values(
                        name=stream, partitions=partitions, retention_ms=retention_ms, created_ms=wall_ms()
                    )
                )
                sid = result.inserted_primary_key[0]
                conn.execute(log_partitions.insert(), _new_heads(sid, 0, partitions))
        except sa.exc.IntegrityError:
            raise StreamExists(stream) from None
        logger.info("created stream %s with %d partitions", stream, partitions)

    def stream_info(self, stream: str) -> StreamInfo:
        """Partitions and retention; StreamNotFound if absent."""
        with self._reader.connect() as conn:
            row = conn.execute(
                sa.select(_ls.id, _ls.partitions, _ls.retention_ms).where(_ls.name == stream)
            ).first()
        if row is None:
            self._cache.pop(stream, None)
            raise StreamNotFound(stream)
        self._cache[stream] = (row[0], row[1], time.monotonic() + STREAM_CACHE_TTL_S)
        return StreamInfo(stream, row[1], row[2])

    def grow_partitions(self, stream: str, partitions: int) -> None:
        """Raise the partition count (never lower); the same count is a no-op."""
        if partitions > MAX_PARTITIONS:
            raise InvalidPartitionCount(f"at most {MAX_PARTITIONS} partitions")
        try:
            with self._writer.begin() as conn:
                row = conn.execute(
                    sa.select(_ls.id, _ls.partitions).where(_ls.name == stream).with_for_update()
                ).first()
                if row is None:
                    raise StreamNotFound(stream)
                sid, current = row
                if partitions < current:
                    raise InvalidPartitionCount(f"{stream} has {current} partitions; partitions never shrink")
                if partitions == current:
                    return
                conn.execute(log_streams.update().where(_ls.id == sid).values(partitions=partitions))
                conn.execute(log_partitions.insert(), _new_heads(sid, current, partitions))
        finally:
            self._cache.pop(stream, None)
        logger.info("grew stream %s from %d to %d partitions", stream, current, partitions)

    def set_retention(self, stream: str, retention_ms: int | None) -> None:
        """Change how long events are kept (None: forever)."""
        _check_retention(retention_ms)
        with self._writer.begin() as conn:
            result = conn.execute(log_streams.update().where(_ls.name == stream).values(retention_ms=retention_ms))
        if result.rowcount == 0:
            raise StreamNotFound(stream)

    def delete_stream(self, stream: str) -> None:
        """Delete the stream, its events and its groups' offsets."""
        try:
            with self._writer.begin() as conn:
                sid = conn.scalar(sa.select(_ls.id).where(_ls.name == stream).with_for_update())
                if sid is None:
                    raise StreamNotFound(stream)
                # Lock the heads first, in partition order like appends: an append in flight finishes
                # before we delete events, and later ones find no heads (StreamNotFound).
                conn.execute(
                    sa.select(_lp.partition).where(_lp.stream_id == sid).order_by(_lp.partition).with_for_update()
                )
                conn.execute(log_partitions.delete().where(_lp.stream_id == sid))
                dropped = conn.execute(events.delete().where(_ev.stream_id == sid)).rowcount
                conn.execute(group_offsets.delete().where(group_offsets.c.stream_id == sid))
                conn.execute(log_streams.delete().where(_ls.id == sid))
        finally:
            self._cache.pop(stream, None)
            self._round_robin.pop(stream, None)
        logger.info("deleted stream %s and its %d events", stream, dropped)

    def watermarks(self, stream: str) -> list[Watermark]:
        """Low and high offsets of every partition."""
        sid, _ = self._stream(stream)
        with self._reader.connect() as conn:
            rows = conn.execute(_WATERMARKS, {"sid": sid}).all()
        if not rows:  # the cached id is stale: the stream was deleted (and maybe re-created) elsewhere
            sid, _ = self._stream(stream, fresh=True)
            with self._reader.connect() as conn:
                rows = conn.execute(_WATERMARKS, {"sid": sid}).all()
        return [Watermark(p, low, high) for p, low, high in rows]

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Drop events older than their stream's retention; return how many were dropped."""
        now = now_ms if now_ms is not None else wall_ms()
        with self._reader.connect() as conn:
            streams = conn.execute(
                sa.select(_ls.id, _ls.name, _ls.retention_ms).where(_ls.retention_ms.is_not(None))
            ).all()
        dropped = 0
        for sid, name, retention in streams:
            cutoff = now - retention
            with self._reader.connect() as conn:
                heads = conn.execute(_WATERMARKS, {"sid": sid}).all()
                targets = [(p, _offset_for_time(conn, sid, p, cutoff)) for p, low, _ in heads]
                targets = [(p, new_low) for (p, new_low), (_, low, _) in zip(targets, heads) if new_low > low]
            # One short transaction per partition: appends to it wait only for that partition's delete.
            for p, new_low in targets:
                with self._writer.begin() as conn:
                    dropped += conn.execute(
                        events.delete().where(_ev.stream_id == sid, _ev.partition == p, _ev.offset < new_low)
                    ).rowcount
                    conn.execute(
                        log_partitions.update()
                        .where(_lp.stream_id == sid, _lp.partition == p, _lp.low < new_low)
                        .values(low=new_low)
                    )
            if targets:
                logger.info("retention of %s moved the start of %d partitions", name, len(targets))
        return dropped

    # -- events ---------------------------------------------------------------------------------
    def append(self, stream: str, events: Sequence[Event]) -> list[Position]:
        """Append events in one transaction, committed (durable) on return; positions in input order."""
        if not events:
            self._stream(stream)
            return []
        for attempt in range(3):
            sid, n = self._stream(stream, fresh=attempt > 0)
            try:
                return self._append(stream, sid, n, events)
            except _StaleStream:
                logger.debug("stream %s changed under the cache, retrying the append", stream)
        raise StreamNotFound(stream)

    def _append(self, stream: str, sid: int, n: int, batch: Sequence[Event]) -> list[Position]:
        rr = self._round_robin[stream]
        parts = [rr.next(n) if e.key is None else partition_for_key(e.key.encode(), n) for e in batch]
        used = sorted(set(parts))
        with self._writer.begin() as conn:
            heads = conn.execute(_LOCK_HEADS, {"sid": sid, "parts": used}).all()
            if len(heads) != len(used) or heads[0][3] != n:
                raise _StaleStream(stream)
            now = wall_ms()
            nxt = {p: off for p, off, _, _ in heads}
            ts = {p: max(now, last) for p, _, last, _ in heads}  # log time never goes back in a partition
            positions = []
            rows = []
            for e, p in zip(batch, parts):
                off = nxt[p]
                nxt[p] = off + 1
                positions.append(Position(p, off))
                headers = orjson.dumps(e.headers).decode() if e.headers else None
                rows.append((sid, p, off, ts[p], e.id, e.type, e.source, e.time, e.subject,
                             e.datacontenttype, e.dataschema, e.key, headers, e.data))
            if self._pg:
                self._pg_insert(conn, rows)
                conn.exec_driver_sql(
                    _PG_UPDATE_HEADS, {"sid": sid, "p": used, "n": [nxt[p] for p in used], "t": [ts[p] for p in used]}
                )
            else:
                conn.exec_driver_sql(_SQLITE_INSERT, rows)
                conn.exec_driver_sql(_SQLITE_UPDATE_HEADS, [(nxt[p], ts[p], sid, p) for p in used])
        return positions

    @staticmethod
    def _pg_insert(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
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

    def read(
        self,
        stream: str,
        partition: int,
        from_offset: int | None = None,
        from_time_ms: int | None = None,
        limit: int = 100,
    ) -> list[Record]:
        """Events of one partition in offset order, from an offset or the first at/after a time."""
        sid = self._partition(stream, partition)
        if from_offset is not None and from_offset < 0:
            raise InvalidOffset(f"offset {from_offset} is negative")
        if limit <= 0:
            return []
        with self._reader.connect() as conn:
            if from_offset is None:
                from_offset = 0 if from_time_ms is None else _offset_for_time(conn, sid, partition, from_time_ms)
            rows = conn.execute(_READ, {"sid": sid, "p": partition, "o": from_offset, "n": limit}).all()
        return to_records(stream, rows)

    def offset_for_time(self, stream: str, partition: int, time_ms: int) -> int:
        """The first offset whose log time is >= ``time_ms`` (the high watermark if none)."""
        sid = self._partition(stream, partition)
        with self._reader.connect() as conn:
            return _offset_for_time(conn, sid, partition, time_ms)


def _offset_for_time(conn: Connection, sid: int, partition: int, time_ms: int) -> int:
    off = conn.scalar(_FIRST_AT_TIME, {"sid": sid, "p": partition, "t": time_ms})
    if off is None:
        off = conn.scalar(_HIGH, {"sid": sid, "p": partition})
    return int(off or 0)


def _new_heads(sid: int, first: int, end: int) -> list[dict[str, int]]:
    return [{"stream_id": sid, "partition": p, "next_offset": 0, "low": 0, "last_ts_ms": 0} for p in range(first, end)]


def _check_retention(retention_ms: int | None) -> None:
    if retention_ms is not None and retention_ms <= 0:
        raise ValueError("retention_ms must be positive, or None to keep events forever")
