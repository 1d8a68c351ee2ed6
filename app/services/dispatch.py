"""The subscription dispatcher: every active subscription reads its stream through its own consumer group.

One asyncio loop in one thread per process (a Celery worker bootstep, or the embedded runner). Every
``refresh_s`` it re-reads the active subscriptions and syncs its partition leases
(``dispatch_leases``); each subscription it holds partitions of gets a runner that loops
fetch -> deliver, and hands each sent batch to a background ``Recorder`` (record -> commit, merging the
batches that queued meanwhile): later batches are read on from where the last one ended and sent while
earlier ones are recorded, up to a bound, and offsets are committed in order. Blocking work
(database, log) runs on a thread pool inside the Flask app context; HTTP runs on the loop with pooled
keep-alive connections.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from app.bus.envelope import Record
from app.bus.log import StreamNotFound
from app.extensions import db
from app.models import Stream, Subscription
from app.models.subscription import STATUS_ACTIVE
from app.services import dispatch_leases
from app.services.dispatch_batch import deliver, record
from app.services.dispatch_config import DeliverySettings, settings
from app.services.dispatch_record import Item
from app.services.dispatch_recorder import Recorder
from app.services.dispatch_send import Courier, SubSpec, share_of, spec_of
from app.services.dispatch_wake import Wakeups
from app.services.event_log import log_shares_app_database, open_app_log
from app.services.subscriptions import forget_group

logger = logging.getLogger(__name__)

T = TypeVar("T")
_BACKOFF_MAX_S = 10.0
# Kafka reads that should not wait still pass a wait above 0: that is what makes them return soon after
# data arrives rather than at the end of every partition (kafka_reader.drain). The SQL log's reads are exact
# and get 0 (one query).
_SHORT_WAIT_S = 0.002
# Batches' worth of events that may be sent and not yet recorded (what a crash can send twice).
UNRECORDED_BATCHES = 4


def new_owner() -> str:
    """A lease owner id unique to this dispatcher: hostname:pid:uuid."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def load_specs(config: DeliverySettings) -> dict[str, SubSpec]:
    """Snapshots of every active subscription; ones that cannot be used (bad filter, unreadable secret) are logged."""
    subs = db.session.execute(
        select(Subscription).where(Subscription.status == STATUS_ACTIVE)
        .options(joinedload(Subscription.stream).joinedload(Stream.tenant))).scalars().all()
    out: dict[str, SubSpec] = {}
    for sub in subs:
        try:
            out[sub.id] = spec_of(sub, config)
        except Exception as exc:  # noqa: BLE001 - one broken subscription must not stop the others
            logger.error("subscription %s cannot be delivered: %s", sub.id, exc)
    return out


def batch_size(spec: SubSpec, config: DeliverySettings) -> int:
    """Events per batch: about ten rounds of the in-flight cap, within the configured maximum.

    A batch is recorded once all of it was attempted, so a worker killed mid-batch sends it again in
    full after the restart: the batch size bounds the duplicates a crash can cause.
    """
    return max(20, min(config.batch_size, spec.max_in_flight * 10))


class Runner:
    """Consumes one subscription's leased partitions: fetch, deliver, record, commit, again."""

    def __init__(self, dispatcher: Dispatcher, spec: SubSpec) -> None:
        self.d = dispatcher
        self.spec = spec
        self.partitions: set[int] = set()  # leased and wanted: fetched from
        self.inflight: set[int] = set()  # fetched or being delivered: their leases must not be released
        self.fresh: set[int] = set()  # newly acquired (or after an error): check for already-recorded events
        self.stopping = False
        self.task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None  # set when the stream is appended to (with Redis)
        # The last read returned all the log had when it started, and its wake-up event was cleared before
        # it: while the event stays unset nothing was appended since, and reading again would find nothing.
        self.caught_up = False

    def stop(self) -> None:
        """Stop after the batch in progress; an idle wait for a wake-up ends now."""
        self.stopping = True
        if self._wake is not None:
            self._wake.set()

    def _woken(self) -> asyncio.Event | None:
        """This runner's wake-up event (None without Redis: the log's own long poll waits instead)."""
        if self._wake is None and self.d.wakeups is not None:
            self._wake = self.d.wakeups.listen(self.spec.stream)
        return self._wake

    def _nothing_new(self, woken: asyncio.Event | None) -> bool:
        """True when no append was announced since the last read, which returned everything there was."""
        return woken is not None and self.caught_up and not woken.is_set()

    @property
    def busy(self) -> set[int]:
        """Partitions whose leases must be kept for now."""
        return self.partitions | self.inflight

    async def run(self) -> None:
        """The consume loop; returns when stopping."""
        failures = 0
        while not self.stopping:
            parts = sorted(self.partitions)
            if not parts or time.monotonic() > self.d.leases_valid_until:
                # Nothing leased, or the leases were not renewed in time (database away): another
                # dispatcher may own these partitions by now, so fetch nothing until a refresh succeeds.
                await asyncio.sleep(0.2)
                continue
            self.inflight = set(parts)
            try:
                await self._pipeline(parts)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged; the batch is re-read (offsets were not committed)
                failures += 1
                logger.exception("subscription %s: batch failed (attempt %d); retrying", self.spec.id, failures)
                self.fresh.update(parts)
                await asyncio.sleep(min(_BACKOFF_MAX_S, 0.5 * 2 ** min(failures, 5)))
            finally:
                self.inflight = set()

    def _keep_going(self, parts: list[int]) -> bool:
        """True while the pipeline may fetch another batch of ``parts``."""
        return (not self.stopping and sorted(self.partitions) == parts
                and time.monotonic() <= self.d.leases_valid_until)

    async def _pipeline(self, parts: list[int]) -> None:
        """Fetch and send batches of ``parts`` while a ``Recorder`` records the sent ones in the background.

        Sending never waits for a recording (the durable commits are off the latency path) unless more than
        ``UNRECORDED_BATCHES`` batches' worth of events wait to be recorded (the bound on what a crash sends
        twice). While behind (the last read came back full) on an exact log, the next batch is read while this
        one is sent. Offsets are committed in batch order, each only once its batch is recorded, so at-least-once
        holds: a failure anywhere re-reads from the committed offsets. Returns when the log is drained and all
        is recorded (an idle long poll), the partitions changed, or on stopping; always after everything sent
        is recorded and committed.
        """
        spec, cfg = self.spec, self.d.config
        size = batch_size(spec, cfg)
        recorder = Recorder(self._record, f"subscription {spec.id}", cfg.record_linger_s,
                            size * UNRECORDED_BATCHES // 2)
        positions: dict[int, int] = {}  # next offsets after the batches fetched (read on from here while recording)
        pause = False
        ahead: asyncio.Future[list[Record]] | None = None
        try:
            while self._keep_going(parts):
                if recorder.error is not None or recorder.lost:
                    break
                if recorder.disabling:
                    pause = True  # a 410 is disabling the subscription: send nothing until a refresh retires us
                    break
                if recorder.backlog >= size * UNRECORDED_BATCHES:
                    await recorder.changed(hurry=True)
                    continue
                from_group = len(positions) < len(parts) and recorder.idle
                try:
                    if from_group:  # a partition not read yet starts at the group's offset (all is committed)
                        records = await self._fetch(parts)
                        if not records:
                            break  # idle: back to the loop, which re-checks the leases
                    elif len(positions) < len(parts):
                        # Where a partition not read yet starts is the group's offset: let the recordings land
                        # (now: a linger would hold this runner's reads, and so delivery, that long).
                        await recorder.changed(hurry=True)
                        continue
                    else:  # read on from where the last batch ended (it may still be being recorded)
                        records = []
                        if ahead is not None:
                            ahead, read = None, ahead
                            records = self._took(await read, len(positions), size)
                        quiet = False
                        if not records:
                            records, quiet = await self._read_on(positions, size, recorder)
                        if not records:
                            if quiet and recorder.idle:
                                break  # a whole idle poll without news, all committed: back to the loop
                            continue
                except StreamNotFound:
                    logger.warning("subscription %s: stream %s is gone from the log", spec.id, spec.stream)
                    pause = True
                    break
                if from_group:  # the group's offsets are where these partitions stand now (even after a reset)
                    positions.update({r.partition: r.offset + 1 for r in records})
                else:
                    for r in records:
                        positions[r.partition] = max(positions.get(r.partition, 0), r.offset + 1)
                if self.d.exact_reads and not self.caught_up and len(positions) == len(parts):
                    # Behind: the next batch is surely there. Read it while this one is sent.
                    ahead = self._start_read(positions, size)
                dedup = bool(self.fresh & {r.partition for r in records})
                items = await deliver(spec, records, dedup, self.d.courier, cfg, self.d.db, list(recorder.items()))
                recorder.add(records, items)
        finally:
            if ahead is not None:
                ahead.cancel()
                ahead.add_done_callback(_ignore)
            # Sent already: record it even when leaving on an error, to spare duplicates after the restart.
            await recorder.drain()
        if pause:
            await asyncio.sleep(cfg.refresh_s)

    async def _read_on(self, positions: dict[int, int], size: int,
                       recorder: Recorder) -> tuple[list[Record], bool]:
        """Read from ``positions`` (ahead of the committed offsets); when nothing is there, wait for an append
        or a recording to finish, whichever comes first, at most the idle poll.

        Returns the records and whether the wait was a whole idle poll without either (``quiet``).
        """
        cfg = self.d.config
        woken = self._woken()
        records: list[Record] = []
        if not self._nothing_new(woken):
            records = self._took(await self._start_read(positions, size), len(positions), size)
        if records:
            return records, False
        waits = []
        if not recorder.idle:
            waits.append(asyncio.ensure_future(recorder.changed(cfg.idle_poll_s)))
        if woken is not None:
            waits.append(asyncio.ensure_future(woken.wait()))
        if not waits:
            return records, True  # no wake-ups and nothing being recorded: the caller's long poll waits
        done, pending = await asyncio.wait(waits, timeout=cfg.idle_poll_s, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if not done:
            self.caught_up = False  # the idle poll: read again even without an announcement
        return records, not done

    def _start_read(self, positions: dict[int, int], size: int) -> asyncio.Future[list[Record]]:
        """Start reading from ``positions`` on the I/O pool (clearing the wake-up first)."""
        woken = self._woken()
        if woken is not None:
            woken.clear()  # before the read: an append announced during it is seen by the next wait or read
        return asyncio.ensure_future(self.d.blocking(read_from, self.d.log, self.spec.stream, dict(positions), size))

    def _took(self, records: list[Record], partitions: int, size: int) -> list[Record]:
        """Note whether a read from ``partitions`` positions caught up with the log; the records."""
        share = -(-size // max(1, partitions))
        per: collections.Counter[int] = collections.Counter(r.partition for r in records)
        # An empty read reached the end of every partition on any log; a short one only on an exact log.
        self.caught_up = not records or (self.d.exact_reads and all(n < share for n in per.values()))
        return records

    async def _fetch(self, parts: list[int]) -> list[Record]:
        """Read from the group's offsets; with wake-ups, wait for one first when nothing new can be there.

        Without wake-ups (no Redis) the log's own long poll waits instead, on the I/O pool. With them, an
        empty read is followed by a wait for an announcement, at most the idle poll (the fallback for
        appends nobody announces, e.g. producers writing straight into Kafka).
        """
        spec, cfg, log = self.spec, self.d.config, self.d.log
        size = batch_size(spec, cfg)
        woken = self._woken()
        if woken is None:
            return await self.d.blocking(log.fetch, spec.group, spec.stream, size, cfg.fetch_wait_s, parts)
        if self._nothing_new(woken):
            try:
                await asyncio.wait_for(woken.wait(), cfg.idle_poll_s)
            except TimeoutError:
                pass
        woken.clear()  # before the read: an append announced during it is seen by the next call
        records = await self.d.blocking(log.fetch, spec.group, spec.stream, size,
                                        0.0 if self.d.exact_reads else _SHORT_WAIT_S, parts)
        self.caught_up = not records or (self.d.exact_reads and len(records) < size)
        return records

    async def _record(self, records: list[Record], items: list[Item]) -> bool:
        """Record sent batches and commit their offsets; True when a partition's lease was lost meanwhile."""
        spec, log = self.spec, self.d.log
        offsets, committed = await record(spec, records, items, self.d.config, self.d.owner, self.d.db,
                                          log if self.d.log_in_app_db else None)
        if offsets and not committed:
            # The offsets follow records this runner read: a log that can skip its end check does (Kafka).
            await self.d.blocking(getattr(log, "commit_read", log.commit), spec.group, spec.stream, offsets)
        partitions = {r.partition for r in records}
        self.fresh -= partitions
        return bool(partitions - set(offsets))


def _deleted(subscription_id: str) -> bool:
    """True when the subscription no longer exists (as opposed to paused or disabled, which keep their offsets)."""
    return db.session.get(Subscription, subscription_id) is None


def _ignore(fut: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned read's outcome, so that asyncio does not log its error as never retrieved."""
    if not fut.cancelled():
        fut.exception()


def read_from(log: Any, stream: str, positions: dict[int, int], limit: int) -> list[Record]:
    """Up to ``limit`` records from ``positions`` ({partition: next offset}) on, shared fairly; not the group's.

    The pipeline reads ahead of the committed offsets. The Kafka log reads every partition with one consumer
    (``drain``; a short wait returns soon after data arrives); the SQL log one query for all (``read_many``).
    """
    share = -(-limit // max(1, len(positions)))
    drain = getattr(log, "drain", None)
    if drain is not None:
        got = drain(stream, dict(positions), limit, _SHORT_WAIT_S, share)
        return [r for p in sorted(got) for r in got[p]]
    read_many = getattr(log, "read_many", None)
    if read_many is not None:
        return read_many(stream, dict(positions), share)
    out: list[Record] = []
    for partition, offset in sorted(positions.items()):
        out.extend(log.read(stream, partition, from_offset=offset, limit=share))
    return out


class Dispatcher:
    """Runs the subscription consumers of this process in a thread with its own event loop."""

    def __init__(self, flask_app: Flask, owner: str | None = None) -> None:
        self.app = flask_app
        self.config = settings(flask_app.config)
        self.owner = owner or new_owner()
        self.log = open_app_log(flask_app)
        # The SQL log in the app's own database: offsets commit in the transaction that records the batch.
        self.log_in_app_db = log_shares_app_database(flask_app) and hasattr(self.log, "commit_in")
        # Reads return everything committed before they start, up to their limit (the SQL log; Kafka's may
        # return early): a short read means the runner has caught up.
        self.exact_reads = bool(getattr(self.log, "exact_reads", False))
        self.runners: dict[str, Runner] = {}
        self.leases_valid_until = 0.0  # time.monotonic() until which our leases are surely ours
        self.courier = Courier(self.config)
        self.wakeups: Wakeups | None = None  # started in the dispatcher's loop
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        # Fetches wait up to fetch_wait_s on a thread each; a pool of its own keeps them off asyncio's default.
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="dispatch-io")

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the dispatcher thread."""
        self._thread = threading.Thread(target=self._main, name="webhook-dispatcher", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        logger.info("webhook dispatcher %s started", self.owner)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish in-flight batches, release the leases, stop the thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        logger.info("webhook dispatcher %s stopped", self.owner)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.wakeups = Wakeups.start(self.app.config, self._loop)
        except Exception:  # noqa: BLE001 - no wake-ups: runners poll the log, as they would without Redis
            logger.exception("dispatcher %s: no wake-ups on publish", self.owner)
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:
                    await self.refresh()
                except Exception:  # noqa: BLE001 - the database may be away for a moment; leases outlive this
                    logger.exception("dispatcher %s: refresh failed", self.owner)
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=self.config.refresh_s)
                except TimeoutError:
                    pass
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        for runner in self.runners.values():
            runner.stop()
        tasks = [r.task for r in self.runners.values() if r.task is not None]
        if tasks:
            # A runner stops between batches: what it sent is recorded and committed before it returns.
            _, pending = await asyncio.wait(tasks, timeout=self.config.timeout_s + 10)
            for task in pending:
                task.cancel()
        try:
            await self.db(dispatch_leases.release_all, self.owner)
        except Exception:  # noqa: BLE001 - the leases expire on their own
            logger.exception("dispatcher %s: could not release its leases", self.owner)
        await self.courier.aclose()
        if self.wakeups is not None:
            self.wakeups.stop()

    # -- helpers --------------------------------------------------------------------------------
    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call (the event log) on the I/O pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args))

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the I/O pool inside the app context (its own session, removed afterwards)."""

        def call() -> T:
            with self.app.app_context():
                return fn(*args)

        return await self.blocking(call)

    # -- membership -----------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Re-read the active subscriptions, sync leases, start and stop runners."""
        specs = await self.db(load_specs, self.config)
        for sub_id in [s for s in self.runners if s not in specs]:
            await self._retire(sub_id)
        busy = {sub_id: r.busy for sub_id, r in self.runners.items()}
        started = time.monotonic()
        owned = await self.db(dispatch_leases.sync, self.owner, {s: spec.partitions for s, spec in specs.items()},
                              busy, self.config.lease_ttl_s)
        # A margin for clock drift between this host and the database: stop before the rows expire.
        self.leases_valid_until = started + self.config.lease_ttl_s * 0.8
        for sub_id, spec in specs.items():
            mine = owned.get(sub_id, set())
            runner = self.runners.get(sub_id)
            spec = share_of(spec, len(mine))  # its limits are the subscription's: split by partitions held
            if runner is None:
                if not mine:
                    continue
                runner = self.runners[sub_id] = Runner(self, spec)
                runner.task = asyncio.create_task(runner.run(), name=f"sub-{sub_id}")
            runner.spec = spec
            runner.fresh |= mine - runner.partitions - runner.inflight
            # Partitions no longer wanted stop being fetched now; their leases go once they are idle.
            runner.partitions = mine
        self.courier.forget(set(self.runners))

    async def _retire(self, sub_id: str) -> None:
        """Stop the runner of a subscription that is no longer active; drop its leases."""
        runner = self.runners.pop(sub_id)
        runner.stop()
        if runner.task is not None:
            await asyncio.wait([runner.task], timeout=self.config.timeout_s + 10)
        await self.db(dispatch_leases.release, self.owner, sub_id)
        if await self.db(_deleted, sub_id):
            # Its last recording may have committed offsets after the API deleted the group: delete it again.
            await self.blocking(forget_group, runner.spec.group, runner.spec.stream, self.log)
        logger.info("dispatcher %s: stopped consuming subscription %s", self.owner, sub_id)
