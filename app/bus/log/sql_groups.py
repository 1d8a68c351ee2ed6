"""Consumer groups of the SQL event log: fetch, commit, lag and resets over the group_offsets table."""
from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.bus.envelope import Record
from app.bus.log.base import InvalidOffset, InvalidPartition, PartitionLag, ResetTarget, StreamNotFound
from app.bus.log.sql_schema import events, group_offsets, log_partitions, log_streams
from app.bus.log.sql_support import RECORD_COLUMNS, to_records
from app.bus.log.sql_support import offset_for_time as first_offset_at

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

logger = logging.getLogger(__name__)

# Polling for new events while a fetch waits: start fast, back off to this.
MAX_POLL_INTERVAL_S = 0.1

_go, _lp, _ev = group_offsets.c, log_partitions.c, events.c
# Every partition of a stream with its watermarks and, for a group, its committed offset (or NULL).
_HEADS = (
    sa.select(_lp.partition, _lp.low, _lp.next_offset, _go.offset)
    .select_from(
        log_partitions.outerjoin(
            group_offsets,
            sa.and_(
                _go.stream_id == _lp.stream_id, _go.partition == _lp.partition, _go.group_name == sa.bindparam("g")
            ),
        )
    )
    .where(_lp.stream_id == sa.bindparam("sid"))
    .order_by(_lp.partition)
)

Heads = list[tuple[int, int, int, "int | None"]]


def fair_share(backlogs: Sequence[int], budget: int, first: int = 0) -> list[int]:
    """Split ``budget`` records over partitions with these backlogs, evenly, starting the turn at ``first``."""
    quotas = [0] * len(backlogs)
    left = list(backlogs)
    order = [(first + i) % len(backlogs) for i in range(len(backlogs))] if backlogs else []
    while budget > 0:
        active = [i for i in order if left[i] > 0]
        if not active:
            break
        share = max(1, budget // len(active))
        for i in active:
            take = min(share, left[i], budget)
            quotas[i] += take
            left[i] -= take
            budget -= take
            if budget == 0:
                break
    return quotas


class SqlGroupsMixin:
    """Consumer-group half of SqlEventLog; relies on its engines and stream cache."""

    if TYPE_CHECKING:
        _pg: bool
        _reader: Engine
        _writer: Engine
        _stream: Callable[..., tuple[int, int]]

    def _init_groups(self) -> None:
        self._turn = itertools.count()

    def _heads(self, conn: Connection, stream: str, group: str) -> tuple[int, Heads]:
        """(stream id, heads); re-reads the stream once when the cached id has gone stale."""
        sid, _ = self._stream(stream, conn=conn)
        rows = conn.execute(_HEADS, {"sid": sid, "g": group}).all()
        if not rows:
            sid, _ = self._stream(stream, fresh=True, conn=conn)
            rows = conn.execute(_HEADS, {"sid": sid, "g": group}).all()
            if not rows:
                raise StreamNotFound(stream)
        return sid, [tuple(r) for r in rows]  # type: ignore[misc]

    def fetch(
        self,
        group: str,
        stream: str,
        max_records: int = 500,
        wait_s: float = 0.0,
        partitions: Sequence[int] | None = None,
    ) -> list[Record]:
        """Events after the group's committed offsets (earliest when none); does not commit."""
        _check_group(group)
        if max_records <= 0:
            return []
        deadline = time.monotonic() + max(wait_s, 0.0)
        pause = 0.01
        while True:
            records = self._fetch_once(group, stream, max_records, partitions)
            left = deadline - time.monotonic()
            if records or left <= 0:
                return records
            time.sleep(min(pause, left))
            pause = min(pause * 2, MAX_POLL_INTERVAL_S)

    def _fetch_once(self, group: str, stream: str, budget: int, partitions: Sequence[int] | None) -> list[Record]:
        with self._reader.connect() as conn:
            sid, heads = self._heads(conn, stream, group)
            if partitions is not None:
                wanted = set(partitions)
                bad = wanted.difference(range(len(heads)))
                if bad:
                    raise InvalidPartition(f"{stream} has partitions 0..{len(heads) - 1}, not {sorted(bad)}")
                heads = [h for h in heads if h[0] in wanted]
            # Offsets are consecutive within a partition, so [start, start + quota) selects exactly the rows
            # to return, and every offset below a committed head is itself committed.
            starts = [low if committed is None else max(low, committed) for _, low, _, committed in heads]
            backlogs = [max(0, high - start) for (_, _, high, _), start in zip(heads, starts, strict=True)]
            if not any(backlogs):
                return []
            quotas = fair_share(backlogs, budget, next(self._turn) % len(heads))
            ranges = [
                sa.and_(_ev.stream_id == sid, _ev.partition == h[0], _ev.offset >= start, _ev.offset < start + q)
                for h, start, q in zip(heads, starts, quotas, strict=True)
                if q
            ]
            stmt = sa.select(*RECORD_COLUMNS).where(sa.or_(*ranges)).order_by(_ev.partition, _ev.offset)
            rows = conn.execute(stmt).all()
        return to_records(stream, rows)

    def commit(self, group: str, stream: str, offsets: Mapping[int, int]) -> None:
        """Store the group's next offsets to read; InvalidOffset outside 0..high."""
        _check_group(group)
        with self._writer.begin() as conn:
            sid, heads = self._heads(conn, stream, group)
            self._upsert(conn, group, stream, sid, _checked(stream, heads, offsets))

    def commit_in(self, conn: Connection, group: str, stream: str, offsets: Mapping[int, int]) -> None:
        """``commit`` on the caller's connection, in its open transaction (the log shares its database):
        the offsets move exactly when the caller's own writes commit."""
        _check_group(group)
        sid, heads = self._heads(conn, stream, group)
        self._upsert(conn, group, stream, sid, _checked(stream, heads, offsets))

    def _upsert(self, conn: Connection, group: str, stream: str, sid: int, offsets: Mapping[int, int]) -> None:
        if not offsets:
            return
        rows = [{"group_name": group, "stream_id": sid, "partition": p, "offset": o} for p, o in offsets.items()]
        try:
            conn.execute(_upsert_statement(self._pg), rows)
        except sa.exc.IntegrityError:  # the stream was deleted while we committed
            raise StreamNotFound(stream) from None

    def committed(self, group: str, stream: str) -> dict[int, int]:
        """Committed offsets by partition (partitions never committed are absent)."""
        with self._reader.connect() as conn:
            _, heads = self._heads(conn, stream, group)
        return {p: c for p, _, _, c in heads if c is not None}

    def lag(self, group: str, stream: str) -> list[PartitionLag]:
        """Committed, end and lag for every partition (lag from the low watermark when never committed)."""
        with self._reader.connect() as conn:
            _, heads = self._heads(conn, stream, group)
        return [PartitionLag(p, c, high, high - (low if c is None else c)) for p, low, high, c in heads]

    def reset(self, group: str, stream: str, to: ResetTarget) -> dict[int, int]:
        """Move the group's offsets to earliest, latest, a time or explicit offsets; return the new ones."""
        _check_group(group)
        with self._writer.begin() as conn:
            sid, heads = self._heads(conn, stream, group)
            if to == "earliest":
                new = {p: low for p, low, _, _ in heads}
            elif to == "latest":
                new = {p: high for p, _, high, _ in heads}
            elif isinstance(to, Mapping) and set(to) == {"time"}:
                at = to["time"]
                if not isinstance(at, int) or isinstance(at, bool):
                    raise ValueError("reset to a time needs epoch milliseconds")
                new = {p: first_offset_at(conn, sid, p, at) for p, _, _, _ in heads}
            elif isinstance(to, Mapping) and set(to) == {"offsets"} and isinstance(to["offsets"], Mapping):
                new = _checked(stream, heads, to["offsets"])
            else:
                raise ValueError('reset to "earliest", "latest", {"time": ms} or {"offsets": {partition: offset}}')
            self._upsert(conn, group, stream, sid, new)
        logger.info("reset group %s on %s to %s", group, stream, new)
        return new

    def groups(self, stream: str | None = None) -> list[tuple[str, str]]:
        """(group, stream) pairs that have committed offsets, optionally for one stream."""
        stmt = (
            sa.select(_go.group_name, log_streams.c.name)
            .distinct()
            .select_from(group_offsets.join(log_streams, log_streams.c.id == _go.stream_id))
            .order_by(_go.group_name, log_streams.c.name)
        )
        if stream is not None:
            stmt = stmt.where(log_streams.c.name == stream)
        with self._reader.connect() as conn:
            return [(g, s) for g, s in conn.execute(stmt)]

    def delete_group(self, group: str, stream: str) -> None:
        """Forget the group's committed offsets on the stream (a deleted subscription's); no-op without any."""
        _check_group(group)
        try:
            sid, _ = self._stream(stream, fresh=True)
        except StreamNotFound:
            return  # the stream's offsets went with it
        with self._writer.begin() as conn:
            conn.execute(sa.delete(group_offsets).where(_go.group_name == group, _go.stream_id == sid))
        logger.info("deleted group %s on %s", group, stream)


@functools.lru_cache(maxsize=2)
def _upsert_statement(pg: bool) -> sa.Insert:
    """INSERT ... ON CONFLICT DO UPDATE of a group's offsets: built once per dialect (the dispatcher commits
    offsets for every recorded batch, and building ``excluded`` anew each time cost more than running it)."""
    ins = (pg_insert if pg else sqlite_insert)(group_offsets)
    return ins.on_conflict_do_update(
        index_elements=[_go.group_name, _go.stream_id, _go.partition], set_={"offset": ins.excluded.offset}
    )


def _checked(stream: str, heads: Heads, offsets: Mapping[Any, Any]) -> dict[int, int]:
    """Offsets keyed by int partition, each within 0..high of an existing partition."""
    high = {p: h for p, _, h, _ in heads}
    out: dict[int, int] = {}
    for key, off in offsets.items():
        try:
            p = int(key)
        except (TypeError, ValueError):
            raise InvalidPartition(f"not a partition: {key!r}") from None
        if p not in high:
            raise InvalidPartition(f"{stream} has partitions 0..{len(heads) - 1}, not {p}")
        if not isinstance(off, int) or isinstance(off, bool) or not 0 <= off <= high[p]:
            raise InvalidOffset(f"offset {off!r} of partition {p} is outside 0..{high[p]}")
        out[p] = off
    return out


def _check_group(group: str) -> None:
    if not group or len(group) > 300:
        raise ValueError("a group name has 1 to 300 characters")
