"""The console's live figures in this process: counting, the shared per-second store, and the minute roll-up flush.

``app/services/metrics.py`` calls ``count`` next to its Prometheus counters (publish, delivery rounds).
Each app gets one ``LiveMetrics`` (``init_app``); its thread starts with the first count, pushes seconds
to Redis when several processes share them, and adds completed minutes into the database.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from flask import Flask, current_app, has_app_context

from app.services.dispatch_config import setting
from app.services.live_counters import Counters, LiveStore, MemoryStore, RedisStore

logger = logging.getLogger(__name__)

# Rates, counted per stream.
EVENTS_IN, DELIVERIES_OK, DELIVERIES_FAILED, DEAD_LETTERED = (
    "events_in", "deliveries_ok", "deliveries_failed", "dead_lettered")
RATES = (EVENTS_IN, DELIVERIES_OK, DELIVERIES_FAILED, DEAD_LETTERED)
# Per subscription (subject: its id), for the subscription page's success-rate and latency charts: attempts
# that succeeded, that failed, and the sum of their durations (ms; the average is the sum over the attempts).
SUB_OK, SUB_FAILED, SUB_LATENCY_MS = "sub_ok", "sub_failed", "sub_latency_ms"
SUBSCRIPTION_FIGURES = (SUB_OK, SUB_FAILED, SUB_LATENCY_MS)
# They are also added up by the hour (row at the hour's first minute, metric name + HOURLY): a week's chart
# then reads 168 rows a figure instead of 10,080.
HOURLY = ":hour"
_EXT = "live_metrics"
PUSH_EVERY_S = 0.5  # shared store: twice a second keeps the dashboard within ~1.5 s of the truth


class LiveMetrics:
    """Counters, their store and the flusher thread of one app in this process."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.flush_s = setting(app.config, "METRICS_FLUSH_S", 10.0, float)
        self._at_exit = False  # stop() registered to run at interpreter exit (once: a fork inherits it)
        self._fresh()

    def _fresh(self) -> None:
        """New counters, store and (not yet started) thread, owned by this process."""
        redis_url = self.app.config.get("REDIS_URL")
        self.counters = Counters(track_unshared=bool(redis_url))
        self.store: LiveStore
        if redis_url:
            import redis

            self.store = RedisStore(self.counters, redis.Redis.from_url(redis_url))
        else:
            self.store = MemoryStore(self.counters)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._pid = os.getpid()

    def count(self, tenant: str, metric: str, subject: str, n: float) -> None:
        """Count ``n`` of ``metric`` for a tenant (slug) and subject (stream) now."""
        if not n:
            return
        if self._pid != os.getpid():
            # A forked child (Celery's prefork pool): the parent's thread did not come along, and the parent
            # flushes the counts it had; start over with this process's own.
            self._fresh()
        self.counters.add(tenant, metric, subject, n)
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="live-metrics", daemon=True)
                self._thread.start()
                if not self._at_exit:
                    # A process that ends normally (a gunicorn or Celery worker stopping) writes its last minute
                    # rather than losing it; the daemon thread alone would just be cut off mid-wait.
                    self._at_exit = True
                    atexit.register(self.stop)

    def _run(self) -> None:
        last_flush = time.monotonic()
        wait = PUSH_EVERY_S if self.store.shared else min(self.flush_s, 1.0)
        while not self._stop.wait(wait):
            self.store.push()
            if time.monotonic() - last_flush >= self.flush_s:
                last_flush = time.monotonic()
                self.flush()

    def flush(self, everything: bool = False) -> int:
        """Add completed minutes (all of them when ``everything``) into the roll-ups; returns rows written."""
        from app.services import metric_rollups

        now = int(time.time())
        minutes = self.counters.take_minutes(None if everything else now - now % 60)
        if not minutes:
            return 0
        try:
            with self.app.app_context():
                return metric_rollups.add_counts(minutes)
        except Exception:  # noqa: BLE001 - the database away for a moment: the next flush writes them
            self.counters.restore_minutes(minutes)
            logger.warning("live metrics: roll-up flush failed; %d minutes kept", len(minutes), exc_info=True)
            return 0

    def stop(self) -> None:
        """Stop the thread, then push and flush everything counted (the current minute too)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.store.push()
        self.flush(everything=True)


def init_app(app: Flask) -> None:
    """Give ``app`` its live metrics (nothing starts until something is counted)."""
    from app.services.metric_gauges import register_collector

    app.extensions[_EXT] = LiveMetrics(app)
    register_collector()


def live(app: Flask | None = None) -> LiveMetrics | None:
    """The live metrics of ``app`` (default: the current app), if it has them."""
    if app is None:
        if not has_app_context():
            return None
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    return app.extensions.get(_EXT)


def count(tenant: str, metric: str, subject: str, n: float) -> None:
    """Count into the current app's live metrics (silently nothing outside an app)."""
    lm = live()
    if lm is not None:
        lm.count(tenant, metric, subject, n)


def rollup(now: float | None = None) -> dict[str, int]:
    """Beat's minute: flush this process's completed minutes, sample every tenant's gauges, drop old roll-ups."""
    from app.services import metric_rollups

    now = time.time() if now is None else now
    lm = live()
    flushed = lm.flush() if lm is not None else 0
    sampled = metric_rollups.sample_gauges(now)
    days = setting(current_app.config, "METRICS_RETENTION_DAYS", float(metric_rollups.DEFAULT_RETENTION_DAYS), float)
    pruned = metric_rollups.prune(now, days)
    return {"flushed": flushed, "sampled": sampled, "pruned": pruned}
