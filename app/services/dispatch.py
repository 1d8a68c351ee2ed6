"""The subscription dispatcher: every active subscription reads its stream through its own consumer group.

One asyncio loop in one thread per process (a Celery worker bootstep, or the embedded runner). Every
``refresh_s`` it re-reads the active subscriptions and syncs its partition leases
(``dispatch_leases``); each subscription it holds partitions of gets a runner that loops
fetch -> deliver -> record -> commit (``dispatch_batch``). Blocking work (database, log) runs on a
thread pool inside the Flask app context; HTTP runs on the loop with pooled keep-alive connections.
"""
from __future__ import annotations

import asyncio
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

from app.bus.log import StreamNotFound
from app.extensions import db
from app.models import Stream, Subscription
from app.models.subscription import STATUS_ACTIVE
from app.services import dispatch_leases
from app.services.dispatch_batch import process
from app.services.dispatch_config import DeliverySettings, settings
from app.services.dispatch_send import Courier, SubSpec, spec_of
from app.services.event_log import open_app_log

logger = logging.getLogger(__name__)

T = TypeVar("T")
_BACKOFF_MAX_S = 10.0


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
                await self._one_batch(parts)
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

    async def _one_batch(self, parts: list[int]) -> None:
        spec, cfg = self.spec, self.d.config
        log = self.d.log
        started = time.perf_counter()
        try:
            records = await self.d.blocking(log.fetch, spec.group, spec.stream, batch_size(spec, cfg),
                                            cfg.fetch_wait_s, parts)
        except StreamNotFound:
            logger.warning("subscription %s: stream %s is gone from the log", spec.id, spec.stream)
            await asyncio.sleep(cfg.refresh_s)
            return
        if not records:
            return
        fetched = time.perf_counter()
        dedup = bool(self.fresh & {r.partition for r in records})
        offsets = await process(spec, records, dedup, self.d.courier, cfg, self.d.owner, self.d.db)
        processed = time.perf_counter()
        if offsets:
            await self.d.blocking(log.commit, spec.group, spec.stream, offsets)
        self.fresh -= {r.partition for r in records}
        logger.debug("subscription %s: %d events: fetch %.3fs, deliver+record %.3fs, commit %.3fs", spec.id,
                     len(records), fetched - started, processed - fetched, time.perf_counter() - processed)


class Dispatcher:
    """Runs the subscription consumers of this process in a thread with its own event loop."""

    def __init__(self, flask_app: Flask, owner: str | None = None) -> None:
        self.app = flask_app
        self.config = settings(flask_app.config)
        self.owner = owner or new_owner()
        self.log = open_app_log(flask_app)
        self.runners: dict[str, Runner] = {}
        self.leases_valid_until = 0.0  # time.monotonic() until which our leases are surely ours
        self.courier = Courier(self.config)
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
            runner.stopping = True
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
        runner.stopping = True
        if runner.task is not None:
            await asyncio.wait([runner.task], timeout=self.config.timeout_s + 10)
        await self.db(dispatch_leases.release, self.owner, sub_id)
        logger.info("dispatcher %s: stopped consuming subscription %s", self.owner, sub_id)
