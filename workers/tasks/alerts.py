"""Alert tasks: evaluate every rule (beat, every ALERT_EVAL_INTERVAL_S) and send alert e-mails."""
from __future__ import annotations

import logging
import smtplib
from typing import Any

from app.extensions import celery

logger = logging.getLogger(__name__)


@celery.task(name="alerts.evaluate", shared=False)
def evaluate() -> dict[str, int]:
    """Evaluate every enabled rule; two runs at once notify once (conditional state changes)."""
    from app.services.alert_eval import evaluate as run

    return run()


@celery.task(name="alerts.send_email", shared=False, bind=True, autoretry_for=(OSError, smtplib.SMTPException),
             retry_backoff=5, retry_backoff_max=600, retry_jitter=True, max_retries=8)
def send_email(self: Any, to: str, message: dict[str, Any]) -> None:
    """Send one alert e-mail (``message``: subject and text), retried with backoff while SMTP fails."""
    from app.services.alert_email import send

    send(to, message)
