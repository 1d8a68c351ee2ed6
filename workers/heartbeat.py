"""Worker and beat heartbeats: a small thread in each process writes ``process_heartbeats`` rows.

The worker's thread also evaluates the ``worker_silent`` rules: ``alerts.evaluate`` is sent by beat, so a
dead beat would otherwise never be noticed. When every worker is down nothing evaluates; watch the fleet
from outside too (docs/alerts.md).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from celery import Celery, bootsteps
from celery.signals import beat_init

from app.services.dispatch_config import setting

logger = logging.getLogger(__name__)


class Heartbeat:
    """Writes a heartbeat of ``kind`` every ``every_s`` seconds until stopped."""

    def __init__(self, flask_app: Any, kind: str, evaluate_silent: bool = False) -> None:
        self.flask_app = flask_app
        self.kind = kind
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.every_s = setting(flask_app.config, "ALERT_HEARTBEAT_S", 10.0, float)
        self.eval_s = setting(flask_app.config, "ALERT_EVAL_INTERVAL_S", 30.0, float)
        self.evaluate_silent = evaluate_silent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{kind}", daemon=True)

    def start(self) -> Heartbeat:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        from app.services import alert_eval, alert_heartbeats

        last_eval = time.monotonic()
        while True:
            try:
                with self.flask_app.app_context():
                    alert_heartbeats.beat(self.kind, self.name)
                    if self.evaluate_silent and time.monotonic() - last_eval >= self.eval_s:
                        last_eval = time.monotonic()
                        alert_eval.evaluate(kinds=("worker_silent",))
            except Exception:  # noqa: BLE001 - the database away for a moment: beat again next time
                logger.warning("heartbeat of %s %s failed", self.kind, self.name, exc_info=True)
            if self._stop.wait(self.every_s):
                return


class HeartbeatStep(bootsteps.StartStopStep):
    """A worker's heartbeat thread, started and stopped with the worker."""

    label = "Alert heartbeat"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.heartbeat: Heartbeat | None = None

    def start(self, worker: Any) -> None:
        """Start beating (nothing without a bound Flask app)."""
        flask_app = getattr(worker.app, "flask_app", None)
        if flask_app is not None:
            self.heartbeat = Heartbeat(flask_app, "worker", evaluate_silent=True).start()

    def stop(self, worker: Any) -> None:
        """Stop beating."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None

    shutdown = stop


_beat_heartbeats: list[Heartbeat] = []


def _on_beat_init(sender: Any = None, **_: Any) -> None:
    # Beat (the command or the embedded service) starting: beat from this process while it lives.
    flask_app = getattr(getattr(sender, "app", None), "flask_app", None)
    if flask_app is not None:
        _beat_heartbeats.append(Heartbeat(flask_app, "beat").start())


def install(celery: Celery) -> None:
    """Add the worker step (once) and listen for beat starting."""
    if HeartbeatStep not in celery.steps["worker"]:
        celery.steps["worker"].add(HeartbeatStep)
    beat_init.connect(_on_beat_init, weak=False, dispatch_uid="alerts-beat-heartbeat")
