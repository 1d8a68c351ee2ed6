"""The subscription consumer bootstep: a Celery worker runs the webhook dispatcher next to its task pool."""
from __future__ import annotations

import logging
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
        from app.runtime import tune_dispatcher_process
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
        tune_dispatcher_process(settings(flask_app.config).switch_interval_s,
                                freeze=bool(flask_app.config.get("GC_FREEZE_ON_START")))

    def stop(self, worker: Any) -> None:
        """Stop the dispatcher: in-flight batches finish and are recorded, leases are released."""
        if self.dispatcher is not None:
            self.dispatcher.stop()
            self.dispatcher = None

    shutdown = stop


def install(celery: Celery) -> None:
    """Add the step to the worker blueprint (once)."""
    if DispatcherStep not in celery.steps["worker"]:
        celery.steps["worker"].add(DispatcherStep)
