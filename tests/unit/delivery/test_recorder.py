"""The dispatcher's background recorder: batches recorded in order, merged while a recording runs, failures kept."""
from __future__ import annotations

import asyncio

import pytest

from app.bus.envelope import Event, Record
from app.services.dispatch_record import Item
from app.services.dispatch_recorder import Recorder


def _batch(first: int, count: int) -> tuple[list[Record], list[Item]]:
    records = [Record("t.s", 0, o, 0, Event(type="x", source="/t", id=f"e{o}", data=b"{}"))
               for o in range(first, first + count)]
    items = [Item(f"e{o}", "x", None, 0, o, b"{}") for o in range(first, first + count)]
    return records, items


class Gate:
    """A record function: notes the offsets it was given, waits until released, then returns or raises ``outcome``."""

    def __init__(self, outcome: bool | Exception = False, released: bool = False) -> None:
        self.outcome = outcome
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        if released:
            self.release.set()

    async def __call__(self, records: list[Record], items: list[Item]) -> bool:
        self.calls.append([r.offset for r in records])
        await self.release.wait()
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def test_batches_queued_during_a_recording_are_recorded_together_in_order() -> None:
    gate = Gate()

    async def scenario() -> None:
        rec = Recorder(gate, "test")
        rec.add(*_batch(0, 2))
        await asyncio.sleep(0)  # the first recording starts and blocks
        rec.add(*_batch(2, 2))
        rec.add(*_batch(4, 1))
        assert rec.backlog == 5 and not rec.idle
        assert [i.offset for i in rec.items()] == [0, 1, 2, 3, 4]
        gate.release.set()
        await rec.drain()
        assert rec.idle and rec.backlog == 0 and rec.error is None

    asyncio.run(scenario())
    assert gate.calls == [[0, 1], [2, 3, 4]]  # one recording for everything that queued behind the first


def test_a_failed_recording_drops_what_queued_behind_it_and_is_raised() -> None:
    gate = Gate(ConnectionError("database gone"))

    async def scenario() -> None:
        rec = Recorder(gate, "test")
        rec.add(*_batch(0, 1))
        await asyncio.sleep(0)
        rec.add(*_batch(1, 1))
        gate.release.set()
        with pytest.raises(ConnectionError):
            await rec.drain()
        assert isinstance(rec.error, ConnectionError) and rec.idle
        with pytest.raises(RuntimeError):
            rec.add(*_batch(2, 1))  # nothing after a failure may be recorded (its offsets would skip the lost ones)

    asyncio.run(scenario())
    assert gate.calls == [[0]]  # the batch behind the failed one was never recorded: it is re-read and sent again


def test_a_lost_lease_is_reported() -> None:
    gate = Gate(True)
    gate.release.set()

    async def scenario() -> bool:
        rec = Recorder(gate, "test")
        rec.add(*_batch(0, 1))
        await rec.drain()
        return rec.lost

    assert asyncio.run(scenario()) is True


def test_a_lingering_recorder_merges_batches_added_within_its_linger() -> None:
    gate = Gate(released=True)

    async def scenario() -> None:
        rec = Recorder(gate, "test", linger_s=0.2, enough=100)
        rec.add(*_batch(0, 2))
        await asyncio.sleep(0.01)  # the recording has started and lingers: nothing recorded yet
        assert gate.calls == [] and not rec.idle
        rec.add(*_batch(2, 3))
        await rec.drain()

    asyncio.run(scenario())
    assert gate.calls == [[0, 1, 2, 3, 4]]  # one recording, not one per batch


def test_enough_queued_events_end_the_linger_at_once() -> None:
    gate = Gate(released=True)

    async def scenario() -> None:
        rec = Recorder(gate, "test", linger_s=60.0, enough=4)
        rec.add(*_batch(0, 2))
        await asyncio.sleep(0.01)
        rec.add(*_batch(2, 2))  # 4 events queued: recorded now, not after the 60 s linger
        await asyncio.wait_for(rec.drain(), 10.0)  # TimeoutError if the linger ran on

    asyncio.run(scenario())
    assert gate.calls == [[0, 1, 2, 3]]


def test_a_pipeline_waiting_for_the_recorder_ends_its_linger() -> None:
    gate = Gate(released=True)

    async def scenario() -> bool:
        rec = Recorder(gate, "test", linger_s=60.0, enough=1000)
        rec.add(*_batch(0, 2))
        await asyncio.sleep(0.01)
        assert gate.calls == []  # lingering
        await asyncio.wait_for(rec.changed(hurry=True), 10.0)  # TimeoutError if the linger ran on
        return rec.idle

    assert asyncio.run(scenario())
    assert gate.calls == [[0, 1]]


def test_drain_does_not_wait_for_the_linger() -> None:
    gate = Gate(released=True)

    async def scenario() -> None:
        rec = Recorder(gate, "test", linger_s=60.0, enough=1000)
        rec.add(*_batch(0, 3))
        await asyncio.wait_for(rec.drain(), 10.0)

    asyncio.run(scenario())
    assert gate.calls == [[0, 1, 2]]
