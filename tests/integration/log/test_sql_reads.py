"""SQL event log only: reading several partitions ahead of a group, and committing in the caller's transaction."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.bus.log import EventLog, InvalidOffset, InvalidPartition
from tests.integration.log.test_conformance import make_event

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


def test_read_many_reads_each_partition_from_its_start_in_one_answer(event_log: EventLog, stream_name: str) -> None:
    event_log.create_stream(stream_name, 3)
    # Seven keys spread the thirty appends over the three partitions.
    for i in range(30):
        event_log.append(stream_name, [make_event(i, key=f"k{i % 7}")])
    by_partition = {p: [r.offset for r in event_log.read(stream_name, p, limit=100)] for p in range(3)}
    assert all(by_partition.values()), "every partition got events"
    starts = {0: 1, 1: 0, 2: len(by_partition[2])}  # partition 2 starts at its end: nothing to read there
    got = event_log.read_many(stream_name, starts, per_partition=3)  # type: ignore[attr-defined]
    assert [(r.partition, r.offset) for r in got] == (
        [(0, o) for o in by_partition[0][1:4]] + [(1, o) for o in by_partition[1][0:3]])
    # The same records a per-partition read returns (content, not just positions).
    assert [r.event.id for r in got[:3]] == [r.event.id for r in event_log.read(stream_name, 0, 1, limit=3)]
    assert event_log.read_many(stream_name, {}, 5) == []  # type: ignore[attr-defined]
    assert event_log.read_many(stream_name, {0: 0}, 0) == []  # type: ignore[attr-defined]


def test_read_many_refuses_what_read_refuses(event_log: EventLog, stream_name: str) -> None:
    event_log.create_stream(stream_name, 2)
    with pytest.raises(InvalidPartition):
        event_log.read_many(stream_name, {2: 0}, 10)  # type: ignore[attr-defined]
    with pytest.raises(InvalidPartition):
        event_log.read_many(stream_name, {-1: 0}, 10)  # type: ignore[attr-defined]
    with pytest.raises(InvalidOffset):
        event_log.read_many(stream_name, {0: -1}, 10)  # type: ignore[attr-defined]


def test_commit_in_moves_the_offsets_only_with_the_callers_transaction(event_log: EventLog, stream_name: str,
                                                                          log_url: str) -> None:
    event_log.create_stream(stream_name, 2)
    event_log.append(stream_name, [make_event(i, key=f"k{i}") for i in range(10)])
    event_log.commit("g", stream_name, {0: 1})
    engine = sa.create_engine(log_url)
    try:
        with pytest.raises(RuntimeError), engine.begin() as conn:
            event_log.commit_in(conn, "g", stream_name, {0: 2, 1: 1})  # type: ignore[attr-defined]
            raise RuntimeError("the caller's own write failed")
        assert event_log.committed("g", stream_name) == {0: 1}  # rolled back with the caller
        with engine.begin() as conn:
            event_log.commit_in(conn, "g", stream_name, {0: 2, 1: 1})  # type: ignore[attr-defined]
        assert event_log.committed("g", stream_name) == {0: 2, 1: 1}
        with pytest.raises(InvalidOffset), engine.begin() as conn:
            event_log.commit_in(conn, "g", stream_name, {0: 1000})  # type: ignore[attr-defined]
        assert event_log.committed("g", stream_name) == {0: 2, 1: 1}
    finally:
        engine.dispose()
