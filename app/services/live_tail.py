"""One live tail's state: what it follows, where it stands in each partition, and its bounded buffer.

The stream's reader (``live_reader``) fills the buffer; the consumer (a Socket.IO pump, a GraphQL
subscription) drains it with ``next_batch``. When the consumer is slower than the stream, the oldest
buffered events are dropped and counted per partition, so the next batch says what was missed and where
to resume. Between two batches the dropped events of one partition are contiguous (the oldest go first),
so one ``Missed`` per partition says it all.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.bus.envelope import Record

DEFAULT_BUFFER = 10_000  # events held per tail before the oldest are dropped
DEFAULT_BATCH = 1_000  # events a next_batch returns at most

Matcher = Callable[[Record], bool]


@dataclass(frozen=True)
class Missed:
    """Events dropped for a slow consumer in one partition: resume with ``from_offset`` to get them."""

    partition: int
    from_offset: int
    count: int


@dataclass
class TailBatch:
    """What a tail yields: events in per-partition offset order, and what was dropped before them."""

    events: list[dict[str, Any]] = field(default_factory=list)
    missed: list[Missed] = field(default_factory=list)


class Tail:
    """An open live tail. Thread-safe ``next_batch``; ``close`` releases it (idempotent).

    ``positions`` (partition -> next offset to examine) belongs to the reader thread once the tail is
    registered; ``starts`` keeps where the tail began, for the caller's acknowledgement.
    """

    def __init__(self, stream: str, positions: dict[int, int], match: Matcher | None, buffer: int,
                 follow_all: bool, on_room: Callable[[], None] | None = None,
                 on_close: Callable[[Tail], None] | None = None, log_name: str = "") -> None:
        self.stream = stream
        self.log_name = log_name
        self.starts = dict(positions)
        self.positions = dict(positions)
        self.match = match
        self.follow_all = follow_all  # new partitions (the stream grew) are followed from their start
        self.capacity = max(1, int(buffer))
        self.error: Exception | None = None  # why the reader closed the tail (stream deleted, ...)
        self._buf: deque[tuple[int, int, dict[str, Any]]] = deque()
        self._missed: dict[int, list[int]] = {}  # partition -> [first dropped offset, count]
        self._cond = threading.Condition()
        self._closed = False
        self._on_room = on_room
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        """True once closed by the consumer or by the reader."""
        return self._closed

    def room(self) -> int:
        """Free places in the buffer (the reader reads history only into free places: nothing is dropped)."""
        return self.capacity - len(self._buf)

    def offer(self, items: Iterable[tuple[int, int, dict[str, Any]]]) -> None:
        """Append ``(partition, offset, event)`` items, dropping the oldest buffered ones beyond capacity."""
        with self._cond:
            if self._closed:
                return
            buf, missed = self._buf, self._missed
            for item in items:
                if len(buf) >= self.capacity:
                    part, offset, _ = buf.popleft()
                    entry = missed.get(part)
                    if entry is None:
                        missed[part] = [offset, 1]
                    else:
                        entry[1] += 1
                buf.append(item)
            self._cond.notify_all()

    def next_batch(self, timeout: float, max_events: int = DEFAULT_BATCH) -> TailBatch | None:
        """Block up to ``timeout`` seconds for events; None when nothing arrived (or the tail is closed)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._buf and not self._missed and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if self._closed:
                return None
            was_full = len(self._buf) >= self.capacity
            take = min(len(self._buf), max(1, max_events))
            popleft = self._buf.popleft
            events = [popleft()[2] for _ in range(take)]
            missed = [Missed(p, first, count) for p, (first, count) in sorted(self._missed.items())]
            self._missed.clear()
        if was_full and self._on_room is not None:
            self._on_room()  # a tail reading history waits for room: tell its reader there is some
        return TailBatch(events, missed)

    def close(self, error: Exception | None = None) -> None:
        """Stop following the stream and free the buffer."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self.error = error
            self._buf.clear()
            self._missed.clear()
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close(self)
