"""In-process counts of the console's rates by second (live charts) and minute (roll-ups), and their shared store.

A web or worker process counts what it does here; nothing on the hot path touches the network or the
database. One process alone (the embedded bus) reads its own seconds (``MemoryStore``); several
processes push theirs into Redis twice a second so that any web process reads them all (``RedisStore``).
Minutes are taken out by the roll-up flush and added into the database by ``metric_rollups``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any, Protocol

logger = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (tenant slug, metric, subject)
Seconds = dict[int, dict[tuple[str, str], float]]  # epoch second -> (metric, subject) -> count
KEEP_SECONDS = 300  # the page's "live" part is the last 2-3 minutes; the rest comes from the roll-ups


class Counters:
    """Thread-safe counts by second and by minute; cheap enough for every publish and delivery round."""

    def __init__(self, track_unshared: bool = False, keep_s: int = KEEP_SECONDS) -> None:
        self._lock = threading.Lock()
        self._keep_s = keep_s
        self._track_unshared = track_unshared
        self._seconds: dict[int, Counter[Key]] = {}
        self._minutes: dict[int, Counter[Key]] = {}  # minute start (epoch s) -> counts not rolled up yet
        self._unshared: Counter[tuple[int, Key]] = Counter()  # counts not pushed to the shared store yet

    def add(self, tenant: str, metric: str, subject: str, n: float, now: float | None = None) -> None:
        """Count ``n`` of ``metric`` for ``tenant``/``subject`` in the current second."""
        sec = int(time.time() if now is None else now)
        key = (tenant, metric, subject)
        with self._lock:
            bucket = self._seconds.get(sec)
            if bucket is None:
                bucket = self._seconds[sec] = Counter()
                self._prune(sec)
            bucket[key] += n
            minute = self._minutes.get(sec - sec % 60)
            if minute is None:
                minute = self._minutes[sec - sec % 60] = Counter()
            minute[key] += n
            if self._track_unshared:
                self._unshared[(sec, key)] += n

    def _prune(self, now_s: int) -> None:
        for sec in [s for s in self._seconds if s < now_s - self._keep_s]:
            del self._seconds[sec]

    def seconds(self, tenant: str, start: int, end: int) -> Seconds:
        """This process's counts of ``tenant`` in the seconds ``[start, end)``."""
        out: Seconds = {}
        with self._lock:
            for sec, bucket in self._seconds.items():
                if start <= sec < end:
                    for (slug, metric, subject), n in bucket.items():
                        if slug == tenant:
                            out.setdefault(sec, {})[(metric, subject)] = n
        return out

    def take_minutes(self, before: int | None) -> dict[int, Counter[Key]]:
        """Remove and return the minute counts that start before ``before`` (None: all of them)."""
        with self._lock:
            done = [m for m in self._minutes if before is None or m < before]
            return {m: self._minutes.pop(m) for m in done}

    def restore_minutes(self, minutes: dict[int, Counter[Key]]) -> None:
        """Put back minutes a failed flush took, to be written by the next one."""
        with self._lock:
            for m, counts in minutes.items():
                self._minutes.setdefault(m, Counter()).update(counts)

    def take_unshared(self) -> Counter[tuple[int, Key]]:
        """Remove and return the counts not yet pushed to the shared store."""
        with self._lock:
            out, self._unshared = self._unshared, Counter()
            return out

    def restore_unshared(self, counts: Counter[tuple[int, Key]]) -> None:
        """Put back counts a failed push took."""
        with self._lock:
            self._unshared.update(counts)


class LiveStore(Protocol):
    """Where the per-second counts of every process are read from."""

    shared: bool

    def push(self) -> None:
        """Publish this process's new counts (no-op when the store is this process)."""

    def seconds(self, tenant: str, start: int, end: int) -> Seconds:
        """Counts of every process for ``tenant`` in ``[start, end)``."""

    def claim(self, tenant_id: int, second: int) -> bool:
        """True for the one web process that should emit ``tenant_id``'s figures of ``second``."""


class MemoryStore:
    """One process: the seconds are its own."""

    shared = False

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def push(self) -> None:
        """Nothing to share."""

    def seconds(self, tenant: str, start: int, end: int) -> Seconds:
        """This process's counts."""
        return self.counters.seconds(tenant, start, end)

    def claim(self, tenant_id: int, second: int) -> bool:
        """The only process emits every second."""
        return True


class RedisStore:
    """Several processes: one Redis hash per tenant and second, ``HINCRBY`` by each process, read by any."""

    shared = True

    def __init__(self, counters: Counters, client: Any, prefix: str = "bus:live",
                 ttl_s: int = 2 * KEEP_SECONDS) -> None:
        self.counters = counters
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def _key(self, tenant: str, sec: int) -> str:
        return f"{self.prefix}:{tenant}:{sec}"

    def push(self) -> None:
        """Add this process's counts since the last push into the shared hashes."""
        counts = self.counters.take_unshared()
        if not counts:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for (sec, (tenant, metric, subject)), n in counts.items():
                key = self._key(tenant, sec)
                pipe.hincrbyfloat(key, f"{metric}|{subject}", n)
                pipe.expire(key, self.ttl_s)
            pipe.execute()
        except Exception:  # noqa: BLE001 - Redis away for a moment: keep the counts for the next push
            self.counters.restore_unshared(counts)
            logger.warning("live metrics: Redis push failed; %d counts kept for the next try", len(counts),
                           exc_info=True)

    def seconds(self, tenant: str, start: int, end: int) -> Seconds:
        """Every process's counts, read in one round trip."""
        secs = list(range(start, end))
        if not secs:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for sec in secs:
            pipe.hgetall(self._key(tenant, sec))
        out: Seconds = {}
        for sec, fields in zip(secs, pipe.execute(), strict=True):
            for raw, value in (fields or {}).items():
                name = raw.decode() if isinstance(raw, bytes) else raw
                metric, _, subject = name.partition("|")  # metric names hold no "|"
                out.setdefault(sec, {})[(metric, subject)] = float(value)
        return out

    def claim(self, tenant_id: int, second: int) -> bool:
        """``SET NX``: the first web process to ask emits; the others' clients get it through the queue."""
        try:
            return bool(self.client.set(f"{self.prefix}:tick:{tenant_id}:{second}", b"1", nx=True, ex=10))
        except Exception:  # noqa: BLE001 - better a duplicate tick (clients merge by second) than none
            logger.warning("live metrics: Redis claim failed", exc_info=True)
            return True

