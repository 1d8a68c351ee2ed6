"""Standard Webhooks signing (https://www.standardwebhooks.com): secrets, signatures and headers."""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import secrets as _secrets
import time
from collections.abc import Sequence

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
SIGNATURE_VERSION = "v1"
CONTENT_TYPE = "application/cloudevents+json"
# The spec recommends 24..64 byte secrets; 32 bytes matches the HMAC-SHA256 block of security.
_SECRET_BYTES = 32
# Decoding accepts a little below the spec's 24-byte recommendation (never below 16, the floor for
# a sane HMAC key) so that secrets minted by other Standard Webhooks tools still load.
_MIN_SECRET_BYTES = 16
_MAX_SECRET_BYTES = 64


def generate_secret() -> str:
    """A new random signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The raw key of a ``whsec_...`` secret (prefix optional); ValueError when it is not valid base64."""
    if not isinstance(secret, str):
        raise ValueError("webhook secret must be a string")
    raw = secret.removeprefix(SECRET_PREFIX).strip()
    # Other implementations emit unpadded base64; pad it rather than refuse it.
    raw += "=" * (-len(raw) % 4)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret is not valid base64 (expected whsec_<base64>)") from exc
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        raise ValueError(
            f"webhook secret must decode to {_MIN_SECRET_BYTES}..{_MAX_SECRET_BYTES} bytes, got {len(key)}"
        )
    return key


@functools.lru_cache(maxsize=1024)
def _key(secret: str) -> bytes:
    # Every delivery signs with the same few secrets: decode each once (a bounded cache of live secrets).
    return secret_bytes(secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256>`` signature of ``f"{msg_id}.{timestamp}." + body``."""
    to_sign = f"{msg_id}.{int(timestamp)}.".encode() + body
    key = _key(secret) if isinstance(secret, str) else secret_bytes(secret)
    digest = hmac.digest(key, to_sign, hashlib.sha256)  # the one-shot C path, not an HMAC object
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def webhook_headers(
    msg_id: str, secrets: Sequence[str], body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers for one delivery, signed once per live secret (rotation)."""
    if isinstance(secrets, str) or not secrets:
        # A bare string would be signed per character; refuse it rather than send garbage.
        raise ValueError("secrets must be a non-empty sequence of whsec_ secrets")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(sign(s, msg_id, ts, body) for s in secrets),
        "content-type": CONTENT_TYPE,
    }
