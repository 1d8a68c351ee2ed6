"""Fan-out of live tails to connected clients: what the Socket.IO ``/live`` namespace does, minus Socket.IO.

A *feed* is one tail and one pump thread that emits its events to a room. Subscriptions from ``latest``
with the same stream, tenant, filters and message form share a feed: each event is filtered and encoded
once for all of them. A subscription from an offset has a feed of its own (its history is its own).

Slow clients: before each emit the pump looks at how many messages already wait to be written to each
member (``Transport.backlog``). A member at its ``buffer`` limit is skipped for that emit and the skipped
events are counted per partition; once its backlog is below the limit again it first receives ``missed``
(``[{"partition", "from_offset", "count"}]``: subscribe ``from {partition: from_offset}`` to get them
back), then events again. So a slow client costs the others nothing, and the server holds about
``buffer`` messages for it (one-message-per-event feeds look again every RECHECK_EVERY messages).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.bus.log import StreamNotFound
from app.security import Principal
from app.services import live_feed
from app.services.errors import BadRequest, NotFound, ServiceError, TooLarge
from app.services.live_tail import Missed, Tail, TailBatch

logger = logging.getLogger(__name__)

EVENT, EVENTS, MISSED, ERROR = "event", "events", "missed", "error"
DEFAULT_CLIENT_BUFFER = 1_000  # messages waiting for one client before it is skipped (and told later)
MAX_CLIENT_BUFFER = 100_000
MAX_BATCH = 1_000  # events in one ``events`` message
MAX_SUBSCRIPTIONS = 50  # per connection
RECHECK_EVERY = 64  # per-event messages sent between two looks at the members' backlogs
WAIT_S = 0.5  # how long a pump waits for events before looking at its members again
DEFAULT_COALESCE_S = 0.025  # LIVE_COALESCE_MS: at most one ``events`` message per feed and tick
_FIELDS = {"stream", "from", "partition", "type", "key", "q", "filter", "batch", "buffer"}


class Transport(Protocol):
    """What the fan-out needs of Socket.IO."""

    def emit(self, message: str, payload: Any, room: str, skip: list[str]) -> None:
        """Send to every member of ``room`` except ``skip``."""

    def send(self, sid: str, message: str, payload: Any) -> None:
        """Send to one client."""

    def backlog(self, sid: str) -> int:
        """Messages waiting to be written to the client."""

    def join(self, sid: str, room: str) -> None:
        """Put the client in a room."""

    def leave(self, sid: str, room: str) -> None:
        """Take the client out of a room."""

    def spawn(self, target: Callable[[], None]) -> None:
        """Run ``target`` in a background thread."""


@dataclass(frozen=True)
class Request:
    """A parsed ``subscribe``."""

    stream: str
    start: str | int | dict[int, int] = "latest"
    partition: int | None = None
    type: str | None = None
    key: str | None = None
    q: str | None = None
    filter: str | None = None
    batch: bool = False
    buffer: int = DEFAULT_CLIENT_BUFFER

    def shared_key(self, tenant_id: int) -> tuple[Any, ...] | None:
        """Subscriptions with equal keys share a feed; None for one that starts in the past."""
        if self.start != "latest":
            return None
        return (tenant_id, self.stream, self.partition, self.type, self.key, self.q, self.filter, self.batch)


def parse_request(data: Any) -> Request:
    """``subscribe``'s payload as a Request (400 for anything malformed)."""
    if not isinstance(data, Mapping):
        raise BadRequest('subscribe takes an object: {"stream", "from"?, ...}', code="malformed_request")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(map(str, unknown))}", code="unknown_field",
                         details={"fields": [str(u)[:100] for u in unknown]})
    stream = data.get("stream")
    if not isinstance(stream, str) or not stream:
        raise BadRequest("stream is required", code="invalid_parameter", details={"param": "stream"})
    texts: dict[str, str | None] = {}
    for name in ("type", "key", "q", "filter"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"{name} must be a string", code="invalid_parameter", details={"param": name})
        texts[name] = value or None
    start = data.get("from", "latest")
    if isinstance(start, Mapping):
        start = dict(start)
    elif not isinstance(start, (str, int)) or isinstance(start, bool):
        raise BadRequest('from must be "latest", "earliest", an offset or {partition: offset}',
                         code="invalid_parameter", details={"param": "from"})
    partition = data.get("partition")
    if partition is not None and (isinstance(partition, bool) or not isinstance(partition, int)):
        raise BadRequest("partition must be an integer", code="invalid_parameter", details={"param": "partition"})
    batch = data.get("batch", False)
    if not isinstance(batch, bool):
        raise BadRequest("batch must be true or false", code="invalid_parameter", details={"param": "batch"})
    buffer = data.get("buffer", DEFAULT_CLIENT_BUFFER)
    if isinstance(buffer, bool) or not isinstance(buffer, int) or not 1 <= buffer <= MAX_CLIENT_BUFFER:
        raise BadRequest(f"buffer must be an integer in 1..{MAX_CLIENT_BUFFER}", code="invalid_parameter",
                         details={"param": "buffer"})
    return Request(stream=stream, start=start, partition=partition, batch=batch, buffer=buffer, **texts)


@dataclass
class Member:
    """One client's subscription to a feed."""

    sid: str
    buffer: int
    skipped: dict[int, list[int]] = field(default_factory=dict)  # partition -> [first offset, count]

    def skip(self, events: list[dict[str, Any]], missed: list[Missed]) -> None:
        """Count events this member did not get."""
        for m in missed:
            self._add(m.partition, m.from_offset, m.count)
        for event in events:
            self._add(event["partition"], event["offset"], 1)

    def _add(self, partition: int, offset: int, count: int) -> None:
        entry = self.skipped.get(partition)
        if entry is None:
            self.skipped[partition] = [offset, count]
        else:
            entry[0] = min(entry[0], offset)
            entry[1] += count

    def take_skipped(self) -> list[dict[str, int]]:
        """What to tell the member it missed, and forget it."""
        out = [{"partition": p, "from_offset": first, "count": count}
               for p, (first, count) in sorted(self.skipped.items())]
        self.skipped.clear()
        return out


class Feed:
    """A tail, the room of its subscribers, and the pump between them."""

    def __init__(self, fanout: FanOut, key: tuple[Any, ...] | None, tail: Tail, batch: bool) -> None:
        self.id = uuid.uuid4().hex
        self.room = f"live:{self.id}"
        self.key = key
        self.tail = tail
        self.batch = batch
        self.stream = tail.stream
        self.members: dict[str, Member] = {}  # guarded by fanout.lock
        self._fanout = fanout

    def run(self) -> None:
        """Pump the tail into the room until the feed has no members or the tail closes.

        A batched feed sends at most one ``events`` message per tick (``FanOut.coalesce_s``): the first
        events after a quiet spell go at once, those arriving within the tick wait in the tail and go
        together at its end. So each client gets at most 1/tick messages a second, however many publish
        requests there were: what a client (and the server, once per client) pays for is messages, not
        events, and that is what bounds fan-out (see docs/performance.md, "Live feed fan-out").
        """
        transport = self._fanout.transport
        tick = self._fanout.coalesce_s if self.batch else 0.0
        next_at = 0.0
        while not self.tail.closed:
            if tick:
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            batch = self.tail.next_batch(WAIT_S, MAX_BATCH)
            if tick and batch is not None:
                next_at = time.monotonic() + tick
            with self._fanout.lock:
                members = list(self.members.values())
            try:
                self._pump(transport, members, batch)
            except Exception:  # noqa: BLE001 - a client gone mid-emit must not stop the others' feed
                logger.warning("live: emitting to %s failed", self.room, exc_info=True)
        if self.tail.error is not None:
            self._fanout.failed(self, self.tail.error)

    def _pump(self, transport: Transport, members: list[Member], batch: TailBatch | None) -> None:
        slow: set[str] = set()
        for member in members:
            if transport.backlog(member.sid) >= member.buffer:
                slow.add(member.sid)
                if batch is not None:
                    member.skip(batch.events, batch.missed)
            elif member.skipped:
                transport.send(member.sid, MISSED, self._payload("missed", member.take_skipped()))
        if batch is None:
            return
        if batch.missed:
            missed = [{"partition": m.partition, "from_offset": m.from_offset, "count": m.count}
                      for m in batch.missed]
            transport.emit(MISSED, self._payload("missed", missed), self.room, list(slow))
        events = batch.events
        if not events:
            return
        if self.batch:
            transport.emit(EVENTS, self._payload("events", events), self.room, list(slow))
            return
        for start in range(0, len(events), RECHECK_EVERY):
            if start:  # one message per event: a client may fall behind within a batch
                for member in members:
                    if member.sid not in slow and transport.backlog(member.sid) >= member.buffer:
                        slow.add(member.sid)
                        member.skip(events[start:], [])
            skip = list(slow)
            for event in events[start:start + RECHECK_EVERY]:
                transport.emit(EVENT, self._payload("event", event), self.room, skip)

    def _payload(self, name: str, value: Any) -> dict[str, Any]:
        return {"subscription": self.id, "stream": self.stream, name: value}


class FanOut:
    """Every feed of one namespace in this process, and which client holds which subscription."""

    def __init__(self, transport: Transport, coalesce_s: float = DEFAULT_COALESCE_S) -> None:
        self.transport = transport
        self.coalesce_s = max(0.0, coalesce_s)  # 0: an ``events`` message per reader round
        self.lock = threading.Lock()
        self._shared: dict[tuple[Any, ...], Feed] = {}
        self._feeds: dict[str, Feed] = {}
        self._by_sid: dict[str, set[str]] = {}  # sid -> feed ids

    def subscribe(self, principal: Principal, sid: str, data: Any) -> dict[str, Any]:
        """Subscribe ``sid``; returns the acknowledgement ``{"subscription", "stream", "from"}``."""
        req = parse_request(data)
        with self.lock:
            held = self._by_sid.get(sid, set())
            if len(held) >= MAX_SUBSCRIPTIONS:
                raise TooLarge(f"at most {MAX_SUBSCRIPTIONS} subscriptions a connection",
                               code="too_many_subscriptions", details={"max": MAX_SUBSCRIPTIONS})
        key = req.shared_key(principal.tenant_id)
        # Open first (this checks the stream, the tenant and the filters), then share or keep it.
        tail = self._open(principal, req)
        feed, start = None, False
        with self.lock:
            feed = self._shared.get(key) if key is not None else None
            if feed is None or feed.tail.closed:
                feed = Feed(self, key, tail, req.batch)
                self._feeds[feed.id] = feed
                if key is not None:
                    self._shared[key] = feed
                start, tail = True, None
            feed.members[sid] = Member(sid, req.buffer)
            self._by_sid.setdefault(sid, set()).add(feed.id)
            # In the room before the positions below are final: every later event reaches this client.
            self.transport.join(sid, feed.room)
        if tail is not None:
            # Joined a feed that was already running: "latest" is the end of the log now that this client is
            # in the room (read after joining, so that every event past it reaches the client).
            tail.close()
            positions = live_feed.ends(tail)
        else:
            positions = feed.tail.starts
        if start:
            self.transport.spawn(feed.run)
        return {"subscription": feed.id, "stream": feed.stream,
                "from": {str(p): o for p, o in sorted(positions.items())}}

    @staticmethod
    def _open(principal: Principal, req: Request) -> Tail:
        try:
            return live_feed.open_tail(principal, req.stream, req.start, partition=req.partition,
                                       event_type=req.type, key=req.key, expression=req.filter, q=req.q)
        except ServiceError as exc:
            if exc.code == "invalid_parameter" and exc.details.get("param") == "expr":
                exc.details["param"] = "filter"  # the browser calls it expr; here it is filter
            raise

    def unsubscribe(self, sid: str, data: Any) -> dict[str, Any]:
        """Drop one subscription of ``sid`` (404 when it holds none of that id)."""
        sub = data.get("subscription") if isinstance(data, Mapping) else data
        with self.lock:
            held = isinstance(sub, str) and sub in self._by_sid.get(sid, set())
        if not held:
            raise NotFound("no such subscription on this connection", code="subscription_not_found",
                           details={"subscription": str(sub)[:100]})
        self._leave(sid, sub)
        return {"unsubscribed": sub}

    def disconnect(self, sid: str) -> None:
        """Drop every subscription of a client that left."""
        for feed_id in list(self._by_sid.get(sid, ())):
            self._leave(sid, feed_id)
        with self.lock:
            self._by_sid.pop(sid, None)

    def _leave(self, sid: str, feed_id: str) -> None:
        with self.lock:
            self._by_sid.get(sid, set()).discard(feed_id)
            feed = self._feeds.get(feed_id)
            if feed is None:
                return
            feed.members.pop(sid, None)
            empty = not feed.members
            if empty:
                self._forget(feed)
        self.transport.leave(sid, feed.room)
        if empty:
            feed.tail.close()

    def _forget(self, feed: Feed) -> None:
        self._feeds.pop(feed.id, None)
        if feed.key is not None and self._shared.get(feed.key) is feed:
            del self._shared[feed.key]

    def failed(self, feed: Feed, error: Exception) -> None:
        """The feed's tail was closed by its reader (the stream was deleted): tell its members, drop it."""
        with self.lock:
            self._forget(feed)
            members = list(feed.members)
            feed.members.clear()
            for sid in members:
                self._by_sid.get(sid, set()).discard(feed.id)
        code = "stream_not_found" if isinstance(error, StreamNotFound) else "live_feed_failed"
        body = {"subscription": feed.id, "error": {"code": code, "message": f"the feed of {feed.stream!r} ended",
                                                   "details": {"stream": feed.stream}}}
        for sid in members:
            self.transport.send(sid, ERROR, body)
            self.transport.leave(sid, feed.room)

    def subscriptions(self, sid: str) -> int:
        """How many subscriptions a client holds (tests)."""
        with self.lock:
            return len(self._by_sid.get(sid, ()))
