"""Alert e-mails: the message of a state change, and sending it through the configured SMTP server."""
from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from flask import current_app

from app.services.errors import Invalid

logger = logging.getLogger(__name__)


def email_configured() -> bool:
    """True when SMTP_HOST is set: only then may rules notify by e-mail."""
    return bool(current_app.config.get("SMTP_HOST"))


def compose(payload: dict[str, Any]) -> dict[str, str]:
    """Subject and text of the e-mail for an alert notification's ``payload`` (the CloudEvent's data)."""
    state = str(payload["state"]).upper()
    subject = f"[{state}] {payload['rule_name']} ({payload['kind']}) — tenant {payload['tenant']}"
    lines = [
        f"Alert rule:  {payload['rule_name']} ({payload['rule_id']})",
        f"Kind:        {payload['kind']}",
        f"Target:      {payload['target']}",
        f"State:       {payload['state']}",
        f"Value:       {payload['value']}",
        f"Threshold:   {payload['threshold']}",
        f"Since:       {payload['since']}",
    ]
    if payload.get("resolved_at"):
        lines.append(f"Resolved at: {payload['resolved_at']}")
    lines.append(f"Alert:       {payload['alert_id']}")
    return {"subject": subject, "text": "\n".join(lines) + "\n"}


def send(to: str, message: dict[str, Any]) -> None:
    """Send ``message`` ({"subject", "text"}) to ``to`` through SMTP_HOST:SMTP_PORT (STARTTLS and login if set)."""
    config = current_app.config
    host = config.get("SMTP_HOST")
    if not host:
        raise Invalid("SMTP_HOST is not configured", code="smtp_not_configured")
    msg = EmailMessage()
    msg["From"] = config.get("ALERT_EMAIL_FROM") or "apg-bus@localhost"
    msg["To"] = to
    msg["Subject"] = str(message["subject"])
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="apg-bus")
    msg.set_content(str(message["text"]))
    port, timeout = int(config.get("SMTP_PORT") or 25), float(config.get("SMTP_TIMEOUT_S") or 15)
    with smtplib.SMTP(host, port, timeout=timeout) as smtp:
        if config.get("SMTP_STARTTLS"):
            smtp.starttls()
        if config.get("SMTP_USER"):
            smtp.login(str(config["SMTP_USER"]), str(config.get("SMTP_PASSWORD") or ""))
        smtp.send_message(msg)
    logger.info("alert e-mail %r sent to %s", msg["Subject"], to)
