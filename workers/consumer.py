"""The subscription consumer bootstep: a Celery worker runs the webhook dispatcher next to its task pool."""
from __future__ import annotations

import gc
import logging
import sys
from typing import Any

from celery import Celery, bootsteps

logger = logging.getLogger(__name__)


class DispatcherStep(bootsteps.StartStopStep):
    """Starts the dispatcher (subscription consumers) when the worker starts, stops it on shutdown."""

    label = "Webhook dispatcher"
    # After the pool: a prefork pool forks its children before the dispatcher's threads exist.
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.dispatcher: Any = None

    def start(self, worker: Any) -> None:
        """Start consuming unless WEBHOOK_DISPATCHER is off for this worker."""
        from app.services.dispatch import Dispatcher
        from app.services.dispatch_config import settings

        flask_app = getattr(worker.app, "flask_app", None)
        if flask_app is None:
            logger.error("the worker's Celery app is not bound to a Flask app; no webhook dispatcher")
            return
        if not settings(flask_app.config).dispatcher_enabled:
            logger.info("webhook dispatcher disabled in this worker (WEBHOOK_DISPATCHER=false)")
            return
        self.dispatcher = Dispatcher(flask_app)
        self.dispatcher.start()
        tune_runtime(settings(flask_app.config).switch_interval_s)

    def stop(self, worker: Any) -> None:
        """Stop the dispatcher: in-flight batches finish and are recorded, leases are released."""
        if self.dispatcher is not None:
            self.dispatcher.stop()
            self.dispatcher = None

    shutdown = stop


_frozen = False


def tune_runtime(switch_interval_s: float) -> None:
    """The dispatching process's runtime: startup objects frozen out of the GC, a shorter GIL switch interval
    (``DeliverySettings.switch_interval_s``; 0 keeps Python's default)."""
    freeze_startup_objects()
    if switch_interval_s > 0:
        sys.setswitchinterval(switch_interval_s)


def freeze_startup_objects() -> None:
    """Move everything loaded so far out of the cyclic garbage collector's reach (once per process).

    The app, Celery, SQLAlchemy, aiohttp and their caches live as long as the worker. Left tracked, every
    full collection traversed them (~250k objects, 130-190 ms here), a pause of every thread that showed
    up as the tail of publish-to-delivered latency (docs/performance.md). Objects made later are
    collected as before.
    """
    global _frozen
    if not _frozen:
        gc.collect()  # what is garbage now is freed, not frozen
        gc.freeze()
        _frozen = True


def install(celery: Celery) -> None:
    """Add the step to the worker blueprint (once)."""
    if DispatcherStep not in celery.steps["worker"]:
        celery.steps["worker"].add(DispatcherStep)
