"""The readers behind live tails: per process and app, one thread per stream that has tails.

A reader follows every partition of its stream from the *head* (the next offset it has not read yet),
reading the event log, the source of truth: so a tail may start at any offset still kept, and events
appended by any process (or straight into Kafka) are seen. A reader sleeps until woken: by a publish in
this process (``LiveHub.wake``), by another process through Redis (``live_wake``), or by its poll
timeout (``POLL_S``, for appends that announce nothing, such as Kafka producers).

Each round the reader asks for the watermarks (one query: which partitions moved, and new ones after
the stream grew), then per partition:

- *live* tails (position at or past the head) share one read from the head; each record is filtered
  for each tail and converted to JSON once. A full buffer drops its oldest events (``Tail.offer``):
  a slow consumer never holds the reader back.
- *catching-up* tails (position below the head: they started at an offset) read their own history
  up to the head, only as much as their buffer has room for, so history is never dropped. Once at the
  head they are live.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from app.bus.envelope import Record, record_to_json
from app.bus.log import EventLog, StreamNotFound, Watermark
from app.services.dispatch_config import setting  # config, else the environment (12-factor)
from app.services.event_log import open_app_log
from app.services.live_tail import Tail
from app.services.live_wake import DEFAULT_CHANNEL, RedisWake
from app.services.wire_format import decode_record

logger = logging.getLogger(__name__)

POLL_S = 0.5  # LIVE_POLL_S: the longest a reader sleeps without news (appends that announce nothing)
MIN_ROUND_S = 0.02  # LIVE_READ_INTERVAL_MS: rounds start at least this far apart (see StreamReader._run)
CHUNK = 500  # events per log read
MAX_CHUNKS = 20  # reads per partition and round, so that one busy partition cannot starve the others
_EXT = "live_feed"

Item = tuple[int, int, dict[str, Any]]


class StreamReader:
    """Follows one log stream for the tails of this process."""

    def __init__(self, hub: LiveHub, log_name: str, tenant_id: int, marks: list[Watermark]) -> None:
        self.hub = hub
        self.log_name = log_name
        self.tenant_id = tenant_id
        self.head: dict[int, int] = {m.partition: m.high for m in marks}
        self.tails: set[Tail] = set()  # guarded by hub.lock
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"live-reader-{log_name}", daemon=True)

    def _run(self) -> None:
        logger.debug("live feed: reader of %s started", self.log_name)
        poll_s = setting(self.hub.app.config, "LIVE_POLL_S", POLL_S, float)
        min_round_s = setting(self.hub.app.config, "LIVE_READ_INTERVAL_MS", MIN_ROUND_S * 1000, float) / 1000
        last = 0.0
        while True:
            self.wake.wait(poll_s)
            # Every publish request wakes the reader; a round costs a watermarks query and a read per
            # partition whatever it finds. Rounds at most every min_round_s make many small publishes one
            # read (the first after a quiet spell is read at once), which a busy box needs more than the
            # few ms: the batched pumps send once per LIVE_COALESCE_MS anyway.
            pause = last + min_round_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            last = time.monotonic()
            self.wake.clear()
            with self.hub.lock:
                tails = [t for t in self.tails if not t.closed]
                if not tails:
                    # Decided under the lock: a tail attached now finds no reader and starts a new one.
                    if self.hub.readers.get(self.log_name) is self:
                        del self.hub.readers[self.log_name]
                    break
            try:
                with self.hub.app.app_context():
                    more = self.round(tails)
            except StreamNotFound as exc:
                logger.info("live feed: stream %s is gone; closing its %d tails", self.log_name, len(tails))
                for tail in tails:
                    tail.close(exc)
                continue
            except Exception:  # noqa: BLE001 - the log away for a moment: tails wait, the next round retries
                logger.warning("live feed: reading %s failed", self.log_name, exc_info=True)
                more = False
            if more:
                self.wake.set()
        logger.debug("live feed: reader of %s stopped (no tails)", self.log_name)

    def round(self, tails: list[Tail]) -> bool:
        """Read what every tail needs now; True when there is more to read at once."""
        log = self.hub.log
        more = False
        # A round's events go to each tail in one offer: one wake-up of its consumer, one message per round.
        pending: dict[Tail, list[Item]] = {}
        for mark in log.watermarks(self.log_name):
            p = mark.partition
            if p not in self.head:  # the stream grew: a new partition is followed from its start
                self.head[p] = mark.low
                for tail in tails:
                    if tail.follow_all:
                        tail.positions.setdefault(p, mark.low)
            followers = [t for t in tails if p in t.positions]
            more |= self._live(log, p, mark, [t for t in followers if t.positions[p] >= self.head[p]], pending)
            for tail in followers:
                if tail.positions[p] < self.head[p]:
                    more |= self._catch_up(log, p, tail)
        for tail, items in pending.items():
            if items:
                tail.offer(items)
        return more

    def _live(self, log: EventLog, p: int, mark: Watermark, live: list[Tail],
              pending: dict[Tail, list[Item]]) -> bool:
        """Read partition ``p`` from the head for the tails there; True when a read was left for later."""
        if not live:
            # Nobody at the head: move it on without reading. Tails below it read their own way up.
            self.head[p] = max(self.head[p], mark.high)
            return False
        for _ in range(MAX_CHUNKS):
            if self.head[p] >= mark.high:
                return False
            records = log.read(self.log_name, p, from_offset=self.head[p], limit=CHUNK)
            if not records:  # retention dropped them meanwhile
                self.head[p] = mark.high
                return False
            self._deliver(p, records, live, pending)
            self.head[p] = records[-1].offset + 1
        return self.head[p] < mark.high

    def _deliver(self, p: int, records: list[Record], live: list[Tail], pending: dict[Tail, list[Item]]) -> None:
        out = {t: pending.setdefault(t, []) for t in live}
        for record in records:
            offset, as_json = record.offset, None
            for tail, items in out.items():
                if offset < tail.positions[p]:
                    continue  # started past it ("latest" taken just after the reader's read)
                tail.positions[p] = offset + 1
                if tail.match is None or tail.match(record):
                    if as_json is None:
                        as_json = self._json(record)
                    items.append((p, offset, as_json))

    def _catch_up(self, log: EventLog, p: int, tail: Tail) -> bool:
        """Read one chunk of a tail's history (below the head) into its free room; True when it has more to read."""
        room = tail.room()
        if room <= 0:
            return False  # next_batch makes room and wakes the reader
        head, pos = self.head[p], tail.positions[p]
        records = log.read(self.log_name, p, from_offset=pos, limit=min(CHUNK, head - pos))
        items: list[Item] = []
        for record in records:
            if record.offset >= head:
                break
            tail.positions[p] = record.offset + 1
            if tail.match is None or tail.match(record):
                items.append((p, record.offset, self._json(record)))
                if len(items) >= room:
                    break
        if not records or records[0].offset >= head:
            tail.positions[p] = head  # nothing left below the head (retention, or offsets the log skipped)
        tail.offer(items)
        return tail.positions[p] < head and tail.room() > 0

    def _json(self, record: Record) -> dict[str, Any]:
        # Shared by every tail that takes the event: consumers must not change it.
        return record_to_json(decode_record(self.tenant_id, record))


class LiveHub:
    """The readers of one app in this process, and the wake-up channel between processes."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.readers: dict[str, StreamReader] = {}
        url = app.config.get("REDIS_URL")
        channel = setting(app.config, "LIVE_WAKE_CHANNEL", DEFAULT_CHANNEL, str)
        self.remote = RedisWake(url, channel, self.wake) if url else None

    @property
    def log(self) -> EventLog:
        """The app's event log."""
        return open_app_log(self.app)

    def wake(self, log_name: str) -> None:
        """Wake this process's reader of ``log_name``, if there is one."""
        reader = self.readers.get(log_name)
        if reader is not None:
            reader.wake.set()

    def published(self, log_name: str) -> None:
        """Events were appended to ``log_name`` here: wake the readers here and in the other processes."""
        self.wake(log_name)
        if self.remote is not None:
            self.remote.announce(log_name)

    def attach(self, log_name: str, tenant_id: int, marks: list[Watermark],
               make_tail: Callable[[Callable[[], None], Callable[[Tail], None]], Tail]) -> Tail:
        """Open a tail on ``log_name`` (``make_tail(on_room, on_close)``), starting the stream's reader if needed."""
        with self.lock:
            reader = self.readers.get(log_name)
            start = reader is None
            if reader is None:
                reader = self.readers[log_name] = StreamReader(self, log_name, tenant_id, marks)
            tail = make_tail(reader.wake.set, self.detach_from(reader))
            reader.tails.add(tail)
        if self.remote is not None:
            self.remote.listen()
        if start:
            reader.thread.start()
        reader.wake.set()  # a tail from an offset starts reading history at once
        return tail

    def detach_from(self, reader: StreamReader) -> Callable[[Tail], None]:
        """The close hook of a tail of ``reader``."""

        def detach(tail: Tail) -> None:
            with self.lock:
                reader.tails.discard(tail)
            reader.wake.set()  # lets it stop at once when this was its last tail

        return detach

    def tails(self) -> int:
        """Open tails in this process (metrics, tests)."""
        with self.lock:
            return sum(len(r.tails) for r in self.readers.values())


_hub_lock = threading.Lock()


def hub_of(app: Flask) -> LiveHub:
    """The app's hub in this process (made on first use; made anew in a forked child)."""
    hub = app.extensions.get(_EXT)
    if hub is None or hub.pid != os.getpid():
        with _hub_lock:
            hub = app.extensions.get(_EXT)
            if hub is None or hub.pid != os.getpid():
                hub = app.extensions[_EXT] = LiveHub(app)
    return hub

