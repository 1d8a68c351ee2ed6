"""Embedded workers: a Celery worker (thread pool) and beat inside the web process (`make run`).

With no broker configured, Celery uses kombu's in-process ``memory://`` transport: ``enqueue()`` from a
request thread and the worker thread share its queues, so nothing else has to be installed or started.
(The hang noted in DESIGN.md with ``celery.contrib.testing.worker.start_worker`` came from its ping
check, which waits for a result on a result backend that the memory transport does not have; a plain
WorkController in a thread works.) The worker's bootstep starts the webhook dispatcher, exactly as in a
production ``celery worker``; beat runs as Celery's threaded embedded service with the in-memory
scheduler (nothing written to disk; schedules are all intervals, so nothing is missed across restarts).
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from celery.beat import EmbeddedService
from flask import Flask

from app.extensions import celery
from workers import init_celery

logger = logging.getLogger(__name__)

# At INFO these log every task run (beat ticks every second) and every webhook request: noise in the
# console of `make run`, and work on the delivery path.
_CHATTY = ("celery.worker.strategy", "celery.app.trace", "celery.beat", "httpx")


class EmbeddedWorkers:
    """Start and stop the in-process worker (with its dispatcher) and beat."""

    def __init__(self, flask_app: Flask, concurrency: int = 4, beat: bool = True) -> None:
        self.flask_app = flask_app
        self.concurrency = concurrency
        self.with_beat = beat
        self.worker: Any = None
        self.beat: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> EmbeddedWorkers:
        """Start the worker thread and, if asked, beat; returns once the worker consumes."""
        init_celery(self.flask_app)  # the singleton serves this app (tests build several)
        for name in _CHATTY:
            if logging.getLogger(name).getEffectiveLevel() < logging.WARNING:
                logging.getLogger(name).setLevel(logging.WARNING)
        # The pool's threads look tasks up on Celery's *current* app, which defaults to a fallback app
        # unless ours is made the default (the `celery worker` command does this itself).
        celery.set_default()
        celery.set_current()
        self.worker = celery.WorkController(
            pool_cls="threads", concurrency=self.concurrency, hostname=f"embedded@{socket.gethostname()}",
            without_heartbeat=True, without_mingle=True, without_gossip=True, loglevel="WARNING",
        )
        self._thread = threading.Thread(target=self.worker.start, name="celery-embedded", daemon=True)
        self._thread.start()
        if self.with_beat:
            self.beat = EmbeddedService(celery, thread=True, scheduler_cls="celery.beat:Scheduler")
            self.beat.start()
        logger.info("embedded Celery worker (%d threads%s) on %s", self.concurrency,
                    ", beat" if self.with_beat else "", celery.conf.broker_url)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop beat, then the worker (its dispatcher records and commits what is in flight)."""
        if self.beat is not None:
            self.beat.stop()
            self.beat = None
        if self.worker is not None:
            self.worker.stop(in_sighandler=False)
            if self._thread is not None:
                self._thread.join(timeout)
            self.worker = None
        logger.info("embedded Celery worker stopped")


def wants_embedded(flask_app: Flask) -> bool:
    """Embedded workers run when no broker is configured, or when EMBEDDED_WORKERS says so."""
    return not flask_app.config.get("CELERY_BROKER_URL") or bool(flask_app.config.get("EMBEDDED_WORKERS"))
