"""The SQL event log on SQLAlchemy Core: SQLite (embedded default) and PostgreSQL (psycopg2)."""
from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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
from app.bus.log.sql_schema import events, group_offsets, log_partitions, log_streams
from app.bus.log.sql_support import (
    READ,
    RECORD_COLUMNS,
    WATERMARKS,
    create_engines,
    event_row,
    to_records,
    update_heads,
    wall_ms,
    write_rows,
)
from app.bus.log.sql_support import (
    offset_for_time as first_offset_at,
)
from app.bus.partitioner import RoundRobin, partition_for_key

logger = logging.getLogger(__name__)

# How long a stream's (id, partitions) is trusted for reads; appends re-check it in their transaction.
STREAM_CACHE_TTL_S = 1.0

_lp, _ls, _ev = log_partitions.c, log_streams.c, events.c
# Locks the heads an append writes to, in partition order (no deadlocks between appends); the join
# brings the current partition count, so an append never uses a stale one.
_LOCK_HEADS = (
    sa.select(_lp.partition, _lp.next_offset, _lp.last_ts_ms, _ls.partitions)
    .select_from(log_partitions.join(log_streams, _ls.id == _lp.stream_id))
    .where(_lp.stream_id == sa.bindparam("sid"), _lp.partition.in_(sa.bindparam("parts", expanding=True)))
    .order_by(_lp.partition)
    .with_for_update(of=log_partitions)
)


class _StaleStream(Exception):
    """The cached (id, partitions) of a stream no longer matches the database."""


def _new_heads(sid: int, first: int, end: int) -> list[dict[str, int]]:
    return [{"stream_id": sid, "partition": p, "next_offset": 0, "low": 0, "last_ts_ms": 0} for p in range(first, end)]


def _check_retention(retention_ms: int | None) -> None:
    if retention_ms is not None and retention_ms <= 0:
        raise ValueError("retention_ms must be positive, or None to keep events forever")


class SqlEventLog(SqlGroupsMixin):
    """EventLog on a SQL database: offsets assigned per partition inside the appending transaction."""

    # A read returns every event committed before it started, up to its limit: fewer means none are left.
    exact_reads = True

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self._engine, self._reader, self._writer, self._pg = create_engines(url, pool_size)
        self._cache: dict[str, tuple[int, int, float]] = {}
        self._round_robin: defaultdict[str, RoundRobin] = defaultdict(RoundRobin)
        self._init_groups()

    def __repr__(self) -> str:
        return f"SqlEventLog({self._engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Release connections."""
        self._engine.dispose()
        if self._reader is not self._engine:
            self._reader.dispose()

    # -- stream lookups -------------------------------------------------------------------------
    def _stream(self, stream: str, fresh: bool = False, conn: Connection | None = None) -> tuple[int, int]:
        """(id, partitions) of a stream, from a short-lived cache; StreamNotFound if absent."""
        now = time.monotonic()
        hit = self._cache.get(stream)
        if hit is not None and not fresh and hit[2] > now:
            return hit[0], hit[1]
        stmt = sa.select(_ls.id, _ls.partitions).where(_ls.name == stream)
        if conn is None:
            with self._reader.connect() as own:
                row = own.execute(stmt).first()
        else:
            row = conn.execute(stmt).first()
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
            rows = conn.execute(WATERMARKS, {"sid": sid}).all()
        if not rows:  # the cached id is stale: the stream was deleted (and maybe re-created) elsewhere
            sid, _ = self._stream(stream, fresh=True)
            with self._reader.connect() as conn:
                rows = conn.execute(WATERMARKS, {"sid": sid}).all()
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
                heads = conn.execute(WATERMARKS, {"sid": sid}).all()
                firsts = [(p, low, first_offset_at(conn, sid, p, cutoff)) for p, low, _ in heads]
            targets = [(p, new_low) for p, low, new_low in firsts if new_low > low]
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
            for e, p in zip(batch, parts, strict=True):
                off = nxt[p]
                nxt[p] = off + 1
                positions.append(Position(p, off))
                rows.append(event_row(sid, p, off, ts[p], e))
            write_rows(conn, self._pg, rows)
            update_heads(conn, self._pg, sid, [(p, nxt[p], ts[p]) for p in used])
        return positions

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
        if from_offset is not None and from_time_ms is not None:
            raise ValueError("give from_offset or from_time_ms, not both")
        if from_offset is not None and from_offset < 0:
            raise InvalidOffset(f"offset {from_offset} is negative")
        if limit <= 0:
            return []
        with self._reader.connect() as conn:
            if from_offset is None:
                from_offset = 0 if from_time_ms is None else first_offset_at(conn, sid, partition, from_time_ms)
            rows = conn.execute(READ, {"sid": sid, "p": partition, "o": from_offset, "n": limit}).all()
        return to_records(stream, rows)

    def read_many(self, stream: str, starts: Mapping[int, int], per_partition: int) -> list[Record]:
        """Up to ``per_partition`` events of each partition from its start offset, in (partition, offset) order.

        One query for all of them (a consumer reading ahead of its committed offsets). Offsets are
        consecutive within a partition, so ``[start, start + n)`` selects exactly the rows to return.
        """
        if per_partition <= 0 or not starts:
            return []
        if min(starts) < 0:
            raise InvalidPartition(f"{stream} has no partition {min(starts)}")
        if min(starts.values()) < 0:
            raise InvalidOffset("offsets must not be negative")
        sid = self._partition(stream, max(starts))
        params: dict[str, int] = {"sid": sid}
        for i, (p, o) in enumerate(sorted(starts.items())):
            params.update({f"p{i}": p, f"o{i}": o, f"e{i}": o + per_partition})
        with self._reader.connect() as conn:
            rows = conn.execute(_read_many_statement(len(starts)), params).all()
        return to_records(stream, rows)

    def offset_for_time(self, stream: str, partition: int, time_ms: int) -> int:
        """The first offset whose log time is >= ``time_ms`` (the high watermark if none)."""
        sid = self._partition(stream, partition)
        with self._reader.connect() as conn:
            return first_offset_at(conn, sid, partition, time_ms)


@functools.lru_cache(maxsize=64)
def _read_many_statement(partitions: int) -> sa.Select[Any]:
    """``read_many``'s query for that many partitions, with bind parameters: built once, compiled once."""
    ranges = [sa.and_(_ev.partition == sa.bindparam(f"p{i}"), _ev.offset >= sa.bindparam(f"o{i}"),
                      _ev.offset < sa.bindparam(f"e{i}")) for i in range(partitions)]
    return (sa.select(*RECORD_COLUMNS).where(_ev.stream_id == sa.bindparam("sid"), sa.or_(*ranges))
            .order_by(_ev.partition, _ev.offset))
