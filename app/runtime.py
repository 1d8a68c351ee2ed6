"""Process-wide tuning of the Python runtime for long-running server processes (web workers, the dispatcher)."""
from __future__ import annotations

import gc
import sys


def freeze_startup_objects() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach.

    The app, Celery, SQLAlchemy and their caches live as long as the process. Left tracked, every
    full collection traversed them (~250k objects, 130-190 ms on the bench box), a pause of every thread
    that showed up as the tail of publish and delivery latency (docs/performance.md). Objects made later
    are collected as before.
    """
    gc.collect()  # what is garbage now is freed, not frozen
    gc.freeze()


def tune_server_process(gc_threshold: int) -> None:
    """A server process (web or worker), its app loaded: startup objects frozen, and the cyclic collector's
    first-generation threshold at ``gc_threshold`` (0 keeps Python's 700).

    Requests and batches keep thousands of objects alive for a while (a 1,000-event publish, a batch of
    deliveries in flight), and with a threshold of 700 the collector's young passes traversed the same live
    objects again and again: ~8% of the dispatching worker's CPU and of a publish request's
    (docs/performance.md). Almost nothing a request or a batch makes is cyclic garbage; reference counting
    frees it, so the higher threshold is rarely reached.
    """
    freeze_startup_objects()
    if gc_threshold > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(gc_threshold, older, oldest)


def tune_dispatcher_process(switch_interval_s: float, freeze: bool = True) -> None:
    """The dispatching worker: startup objects frozen (``freeze``), a shorter GIL switch interval (0 keeps
    Python's default).

    The dispatcher's loop (HTTP) shares the GIL with its database threads; with the default 5 ms each
    hand-over could hold a delivery up that long.
    """
    if freeze:
        freeze_startup_objects()
    if switch_interval_s > 0:
        sys.setswitchinterval(switch_interval_s)
