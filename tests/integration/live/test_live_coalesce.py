"""A batched feed sends at most one ``events`` message per tick (LIVE_COALESCE_MS), and loses nothing.

The pump is driven through its real Tail; Socket.IO is replaced by a recording transport, because what
is checked is how many messages the pump emits, which a client cannot tell apart from network batching.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from app.services.live_fanout import EVENTS, FanOut, Feed, Member
from app.services.live_tail import Tail

TICK_S = 3.0  # long against the five offers below (0.5 s in all): they fall in one tick
SPACING_S = 0.1
WAIT_S = 15.0


class RecordingTransport:
    """Keeps every room emit; clients never lag (backlog 0)."""

    def __init__(self) -> None:
        self.emits: list[tuple[str, Any]] = []
        self.cond = threading.Condition()

    def emit(self, message: str, payload: Any, room: str, skip: list[str]) -> None:
        with self.cond:
            self.emits.append((message, payload))
            self.cond.notify_all()

    def send(self, sid: str, message: str, payload: Any) -> None:
        self.emit(message, payload, sid, [])

    def backlog(self, sid: str) -> int:
        return 0

    def join(self, sid: str, room: str) -> None:
        pass

    def leave(self, sid: str, room: str) -> None:
        pass

    def spawn(self, target: Callable[[], None]) -> None:
        threading.Thread(target=target, daemon=True).start()

    def wait_events(self, n: int) -> list[dict[str, Any]]:
        def got() -> list[dict[str, Any]]:
            return [e for m, p in self.emits if m == EVENTS for e in p["events"]]

        with self.cond:
            self.cond.wait_for(lambda: len(got()) >= n, WAIT_S)
            return got()


def _items(start: int, n: int) -> list[tuple[int, int, dict[str, Any]]]:
    return [(0, i, {"partition": 0, "offset": i, "data": {"n": i}}) for i in range(start, start + n)]


def test_a_batched_feed_coalesces_offers_within_a_tick_into_one_message() -> None:
    transport = RecordingTransport()
    fanout = FanOut(transport, coalesce_s=TICK_S)
    tail = Tail("s", {0: 0}, None, 1_000, follow_all=True)
    feed = Feed(fanout, None, tail, batch=True)
    feed.members["sid"] = Member("sid", 1_000)
    transport.spawn(feed.run)
    try:
        tail.offer(_items(0, 1))
        assert len(transport.wait_events(1)) == 1  # the first after a quiet spell goes at once
        for start in range(1, 6):  # five reader rounds (five publishes) within one tick, apart enough that
            time.sleep(SPACING_S)  # an uncoalesced pump would send each on its own
            tail.offer(_items(start, 1))
        events = transport.wait_events(6)
    finally:
        tail.close()
    assert [e["offset"] for e in events] == list(range(6))
    batches = [p["events"] for m, p in transport.emits if m == EVENTS]
    assert [len(b) for b in batches] == [1, 5]


def test_without_a_tick_each_reader_round_is_a_message() -> None:
    transport = RecordingTransport()
    tail = Tail("s", {0: 0}, None, 1_000, follow_all=True)
    feed = Feed(FanOut(transport, coalesce_s=0), None, tail, batch=True)
    feed.members["sid"] = Member("sid", 1_000)
    transport.spawn(feed.run)
    try:
        for start in range(3):
            tail.offer(_items(start, 1))
            transport.wait_events(start + 1)  # each taken before the next arrives
        events = transport.wait_events(3)
    finally:
        tail.close()
    assert [e["offset"] for e in events] == [0, 1, 2]
    assert [len(p["events"]) for m, p in transport.emits if m == EVENTS] == [1, 1, 1]
