"""Webhook signing secrets: encrypted at rest with Fernet, rotated with a grace period.

``Subscription.secrets`` holds the live secrets newest first, each ``{"enc": <Fernet token>,
"expires_at": <RFC 3339 UTC> | None}``; the newest one never expires, older ones expire at the end of
the grace period of the rotation that replaced them. A delivery signs with every live secret.

The Fernet key is ``WEBHOOK_SECRET_KEY`` (one key, or several comma-separated: the first encrypts,
all decrypt, so the key itself can be rotated). Without it, a key is derived from ``SECRET_KEY``
with HKDF-SHA256 (salt and info fixed below): the embedded default works with no set-up, and
changing SECRET_KEY then makes every stored webhook secret unreadable — set WEBHOOK_SECRET_KEY in
production. While moving from the derived key to an explicit one, list the derived key second.
"""
from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from app.bus.delivery.signing import generate_secret
from app.models import Subscription
from app.models.base import utcnow
from app.services.windows import as_utc

logger = logging.getLogger(__name__)

HKDF_SALT = b"apg-event-bus"
HKDF_INFO = b"webhook-secrets/fernet/v1"
# Bounds the webhook-signature header: rotating again and again within a grace period keeps at most
# this many secrets (the oldest, already superseded twice, go first).
MAX_LIVE_SECRETS = 5


class SecretKeyError(RuntimeError):
    """A stored secret cannot be decrypted with the configured keys (WEBHOOK_SECRET_KEY changed?)."""


def derive_key(secret_key: str) -> bytes:
    """The Fernet key derived from SECRET_KEY with HKDF-SHA256 (url-safe base64 of 32 bytes)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO).derive(
        secret_key.encode("utf-8"))
    return base64.urlsafe_b64encode(raw)


@functools.lru_cache(maxsize=8)
def _fernet(webhook_key: str | None, secret_key: str) -> MultiFernet:
    # Cached: HKDF and key parsing on every delivery would be wasted work; keys change only on restart.
    if webhook_key:
        keys = [k.strip() for k in webhook_key.split(",") if k.strip()]
        try:
            return MultiFernet([Fernet(k) for k in keys])
        except ValueError as exc:
            raise SecretKeyError("WEBHOOK_SECRET_KEY must be Fernet keys (Fernet.generate_key()), "
                                 "comma-separated") from exc
    return MultiFernet([Fernet(derive_key(secret_key))])


def fernet(config: Mapping[str, Any] | None = None) -> MultiFernet:
    """The Fernet of ``config`` (default: the current app's)."""
    cfg = config if config is not None else current_app.config
    return _fernet(cfg.get("WEBHOOK_SECRET_KEY") or None, str(cfg["SECRET_KEY"]))


def encrypt(secret: str, config: Mapping[str, Any] | None = None) -> str:
    """A Fernet token of ``secret``."""
    return fernet(config).encrypt(secret.encode("utf-8")).decode("ascii")


def decrypt(token: str, config: Mapping[str, Any] | None = None) -> str:
    """The secret inside a Fernet token; SecretKeyError when no configured key opens it."""
    try:
        return fernet(config).decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise SecretKeyError("a webhook secret cannot be decrypted: was WEBHOOK_SECRET_KEY or SECRET_KEY "
                             "changed?") from exc


def new_secret_entry(config: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """A new ``whsec_`` secret and its stored entry (encrypted, no expiry)."""
    secret = generate_secret()
    return secret, {"enc": encrypt(secret, config), "expires_at": None}


def _expiry(entry: Mapping[str, Any]) -> datetime | None:
    value = entry.get("expires_at")
    return None if value is None else as_utc(datetime.fromisoformat(str(value)))


def _live_entries(entries: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    out = []
    for entry in entries:
        expiry = _expiry(entry)
        if expiry is None or expiry > now:
            out.append(entry)
    return out


def live_secrets(subscription: Subscription, now: datetime | None = None,
                 config: Mapping[str, Any] | None = None) -> list[str]:
    """The subscription's live secrets, decrypted, newest first; expired ones are left out."""
    moment = as_utc(now or utcnow())
    return [decrypt(e["enc"], config) for e in _live_entries(list(subscription.secrets or []), moment)]


def secrets_view(subscription: Subscription, now: datetime | None = None) -> list[dict[str, Any]]:
    """What the API shows of the secrets: how many are live and until when (never the secrets)."""
    moment = as_utc(now or utcnow())
    return [{"expires_at": _expiry(e)} for e in _live_entries(list(subscription.secrets or []), moment)]


def rotate(subscription: Subscription, grace_s: int | None = None, now: datetime | None = None,
           config: Mapping[str, Any] | None = None) -> str:
    """Put a new secret first; the live older ones expire ``grace_s`` from now (or sooner). Returns it."""
    cfg = config if config is not None else current_app.config
    grace = int(cfg["WEBHOOK_ROTATION_GRACE_S"]) if grace_s is None else grace_s
    moment = as_utc(now or utcnow())
    until = moment + timedelta(seconds=grace)
    previous = []
    for entry in _live_entries(list(subscription.secrets or []), moment):
        expiry = _expiry(entry)
        # A secret already on its way out keeps its earlier end: rotating again never extends it.
        end = until if expiry is None or expiry > until else expiry
        if end > moment:
            previous.append({"enc": entry["enc"], "expires_at": end.isoformat()})
    secret, entry = new_secret_entry(cfg)
    # A new list, not an in-place change: the JSON column only notices reassignment.
    subscription.secrets = [entry, *previous][:MAX_LIVE_SECRETS]
    return secret
