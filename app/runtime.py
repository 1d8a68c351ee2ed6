"""Process-wide tuning of the Python runtime for long-running server processes (web workers, the dispatcher)."""
from __future__ import annotations

import gc
import sys


def freeze_startup_objects() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach.

    The app, Celery, SQLAlchemy, aiohttp and their caches live as long as the process. Left tracked, every
    full collection traversed them (~250k objects, 130-190 ms on the bench box), a pause of every thread
    that showed up as the tail of publish and delivery latency (docs/performance.md). Objects made later
    are collected as before.
    """
    gc.collect()  # what is garbage now is freed, not frozen
    gc.freeze()


def tune_dispatcher_process(switch_interval_s: float, freeze: bool = True, gc_threshold: int = 0) -> None:
    """The dispatching worker: startup objects frozen (``freeze``), a shorter GIL switch interval, and a
    higher first-generation threshold of the cyclic collector (``gc_threshold``); 0 keeps Python's default.

    The dispatcher's loop (HTTP) shares the GIL with its database threads; with the default 5 ms each
    hand-over could hold a delivery up that long. A batch in flight keeps thousands of objects alive for a
    while (records, items, requests), so with Python's threshold of 700 the collector ran young-generation
    passes every few dozen events and traversed the same live batch again and again: ~8% of the worker's
    CPU while delivering (docs/performance.md). Almost nothing the dispatcher makes is cyclic garbage;
    reference counting frees it, so the higher threshold is rarely reached.
    """
    if freeze:
        freeze_startup_objects()
    if switch_interval_s > 0:
        sys.setswitchinterval(switch_interval_s)
    if gc_threshold > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(gc_threshold, older, oldest)
