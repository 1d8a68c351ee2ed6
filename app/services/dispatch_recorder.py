"""Recording sent batches in the background: one recording at a time, merging whatever queued meanwhile.

The dispatcher's pipeline (``dispatch.Runner``) hands every sent batch to its runner's ``Recorder`` and goes
on reading and sending; delivery latency then no longer includes the durable commits. The recorder takes
everything queued, records it in one transaction and commits the log offsets (``record``), then takes what
queued during that: under load a recording covers many batches (group commit). Before each recording it
lingers a little (``WEBHOOK_RECORD_LINGER_S``) for more batches to merge, unless enough events queued already.
Offsets move in batch order and only past recorded batches, so at-least-once holds; the
number of events sent and not yet recorded is bounded by the pipeline (``Runner``), which is what a crash
can send twice.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from itertools import chain

from app.bus.envelope import Record
from app.services.dispatch_record import DISABLE, Item

logger = logging.getLogger(__name__)

Batch = tuple[list[Record], list[Item]]
# Records the merged batches and commits their offsets; True when a partition's lease was lost meanwhile.
RecordFn = Callable[[list[Record], list[Item]], Awaitable[bool]]


class Recorder:
    """Background recording of one runner's sent batches, in order, merged while one recording runs."""

    def __init__(self, record: RecordFn, label: str, linger_s: float = 0.0, enough: int = 0) -> None:
        """``linger_s``: how long a recording waits for more batches to merge, unless ``enough`` events queued."""
        self._record = record
        self._label = label
        self._linger_s = linger_s
        self._enough = enough
        self._filled = asyncio.Event()  # set once ``enough`` events queued: a linger ends early
        self._queued: list[Batch] = []
        self._current: list[Batch] = []
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.error: BaseException | None = None  # a recording failed: nothing after it may be committed
        self.lost = False  # a lease was lost: the runner must stop reading those partitions

    # -- what the pipeline asks -----------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """True when everything handed over is recorded and committed."""
        return not self._queued and not self._current

    @property
    def backlog(self) -> int:
        """Events sent and not yet recorded (queued or being recorded)."""
        return sum(len(records) for records, _ in chain(self._current, self._queued))

    def items(self) -> Iterator[Item]:
        """Items sent and not yet recorded, oldest first (their failed keys hold later events of the key)."""
        for _, items in chain(self._current, self._queued):
            yield from items

    @property
    def disabling(self) -> bool:
        """True when an unrecorded item answered 410: the subscription is being disabled."""
        return any(i.kind == DISABLE for i in self.items())

    # -- handing over and waiting ----------------------------------------------------------------
    def add(self, records: list[Record], items: list[Item]) -> None:
        """Queue a sent batch for recording (in the order added)."""
        if self.error is not None:
            raise RuntimeError("recorder failed; nothing more may be recorded") from self.error
        self._queued.append((records, items))
        if sum(len(r) for r, _ in self._queued) >= self._enough:
            self._filled.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"record-{self._label}")

    def hurry(self) -> None:
        """End a linger now: the pipeline waits for the recorder (its bound, a partition's start, a drain)."""
        self._filled.set()

    async def changed(self, timeout_s: float | None = None, hurry: bool = False) -> None:
        """Wait until a recording finishes (or fails), at most ``timeout_s``; ``hurry``: end a linger first."""
        if hurry:
            self.hurry()
        self._changed.clear()
        if self._task is None or self._task.done():
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            pass

    async def drain(self) -> None:
        """Wait until everything queued is recorded (no linger); re-raises a recording's failure."""
        self.hurry()
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self.error is not None:
            raise self.error

    # -- the recording loop ----------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while self._queued and self.error is None:
                if self._linger_s > 0 and not self._filled.is_set():
                    # Each recording is a transaction of several statements whatever its size: at moderate
                    # rates merging a few batches' worth costs far less CPU, and delivery latency does not
                    # wait for it (only the offsets and the delivery rows appear that much later).
                    try:
                        await asyncio.wait_for(self._filled.wait(), self._linger_s)
                    except TimeoutError:
                        pass
                self._filled.clear()
                self._current, self._queued = self._queued, []
                records = [r for batch, _ in self._current for r in batch]
                items = [i for _, batch in self._current for i in batch]
                try:
                    if await self._record(records, items):
                        self.lost = True
                except Exception as exc:  # noqa: BLE001 - kept for the pipeline, which re-raises it
                    logger.warning("%s: recording %d sent events failed: %s", self._label, len(records), exc)
                    self.error = exc
                    self._queued = []  # sent, not recorded: re-read from the committed offsets and sent again
                self._current = []
                self._changed.set()
        finally:
            self._current = []
            self._changed.set()
