"""Idempotency-Key: the first response to a key is stored and replayed for IDEMPOTENCY_TTL_S (24 h).

How a request with a key runs (``run_once``):

1. claim the key by inserting a *pending* record (status 0, body = a random claim token) and committing.
   The table's primary key (tenant, scope, key) makes concurrent duplicates safe: exactly one insert
   wins; the losers read the winner's record and get its stored response, 409 while it is still
   pending, or 422 ``idempotency_key_reused`` when their body differs.
2. run the action (the append), which writes to the event log, a different store than this table.
3. store the response in the record (only if our claim token is still there), or delete the claim when
   the action failed, so that a retry can append.

The record therefore never claims success for events that were not appended. The one window left is a
crash (or lost database) between 2 and 3: the events are durable but the record stays pending. A retry
within PENDING_LEASE_S gets 409; after it, the retry takes the claim over and appends again. That is
at-least-once, the same guarantee a Kafka producer without transactions gives.
"""
from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.extensions import db
from app.models import IdempotencyRecord
from app.models.base import utcnow
from app.security import Principal
from app.services.errors import BadRequest, Conflict, Invalid

logger = logging.getLogger(__name__)

PENDING = 0
PENDING_PREFIX = b"pending:"
# How long a pending claim is trusted. Longer than any append may take (Kafka: 30 s delivery timeout + slack).
PENDING_LEASE_S = 120
_KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
_CLAIM_ATTEMPTS = 3

Response = tuple[int, Any]


def check_key(key: str) -> str:
    """An Idempotency-Key header value: 1 to 255 printable ASCII characters (400 otherwise)."""
    if not _KEY_RE.match(key):
        raise BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters",
                         code="invalid_idempotency_key")
    return key


def request_hash(body: Any) -> str:
    """SHA-256 of the body in canonical JSON (sorted keys), so re-serialising a retry does not change it."""
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # nesting beyond orjson's limit, in a part the envelope ignores
        raise Invalid("the body is nested too deeply", code="invalid_body") from exc
    return hashlib.sha256(canonical).hexdigest()


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _pk(tenant_id: int, scope: str, key: str) -> tuple[Any, ...]:
    t = IdempotencyRecord
    return (t.tenant_id == tenant_id, t.scope == scope, t.key == key)


def run_once(principal: Principal, scope: str, key: str, body: Any, action: Callable[[], Response]) -> Response:
    """Run ``action`` once per (tenant, scope, key) and body; replay its stored response afterwards."""
    check_key(key)
    digest = request_hash(body)
    claimed = _claim(principal.tenant_id, scope, key, digest)
    if isinstance(claimed, tuple):
        from app.services.metrics import IDEMPOTENT_REPLAYS

        IDEMPOTENT_REPLAYS.labels(principal.tenant_slug).inc()
        return claimed
    token = claimed
    try:
        status, response = action()
    except BaseException:
        _release(principal.tenant_id, scope, key, token)
        raise
    _finish(principal.tenant_id, scope, key, token, status, response)
    return status, response


def _claim(tenant_id: int, scope: str, key: str, digest: str) -> bytes | Response:
    """Our claim token, or the stored response to replay; 409 while another request holds the key."""
    ttl = timedelta(seconds=int(current_app.config["IDEMPOTENCY_TTL_S"]))
    lease = timedelta(seconds=PENDING_LEASE_S)
    for _ in range(_CLAIM_ATTEMPTS):
        token = PENDING_PREFIX + uuid.uuid4().hex.encode("ascii")
        now = utcnow()
        db.session.add(IdempotencyRecord(tenant_id=tenant_id, scope=scope, key=key, request_hash=digest,
                                         status=PENDING, body=token, created_at=now))
        try:
            db.session.commit()
            return token
        except IntegrityError:
            db.session.rollback()
        row = db.session.execute(
            select(IdempotencyRecord).where(*_pk(tenant_id, scope, key)).execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if row is None:
            continue  # the holder released its claim (its append failed): try to claim again
        age = now - _aware(row.created_at)
        if age <= ttl:
            if row.request_hash != digest:
                raise Invalid("this Idempotency-Key was used with a different body", code="idempotency_key_reused",
                              details={"idempotency_key": key})
            if row.status != PENDING:
                return row.status, orjson.loads(row.body)
            if age <= lease:
                raise Conflict("a request with this Idempotency-Key is in progress", code="idempotency_key_in_progress",
                               details={"idempotency_key": key, "retry_after": 1})
            logger.warning("taking over the abandoned Idempotency-Key claim %r (%s): the events may be appended twice",
                           key, scope)
        # Expired, or abandoned: take it over, unless someone else changed it since we read it.
        result = db.session.execute(
            update(IdempotencyRecord)
            .where(*_pk(tenant_id, scope, key), IdempotencyRecord.status == row.status,
                   IdempotencyRecord.created_at == row.created_at)
            .values(request_hash=digest, status=PENDING, body=token, created_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        if result.rowcount == 1:
            return token
    raise Conflict("a request with this Idempotency-Key is in progress", code="idempotency_key_in_progress",
                   details={"idempotency_key": key, "retry_after": 1})


def _finish(tenant_id: int, scope: str, key: str, token: bytes, status: int, response: Any) -> None:
    """Store the response under our claim. The action has succeeded: a failure here is logged, not raised."""
    try:
        result = db.session.execute(
            update(IdempotencyRecord)
            .where(*_pk(tenant_id, scope, key), IdempotencyRecord.body == token)
            .values(status=status, body=orjson.dumps(response))
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        logger.exception("could not store the response of Idempotency-Key %r (%s)", key, scope)
        return
    if result.rowcount != 1:
        logger.warning("the claim on Idempotency-Key %r (%s) was taken over before the response was stored", key, scope)


def _release(tenant_id: int, scope: str, key: str, token: bytes) -> None:
    """Drop our pending claim after a failed action, so that a retry may run it."""
    try:
        db.session.rollback()
        db.session.execute(
            delete(IdempotencyRecord)
            .where(*_pk(tenant_id, scope, key), IdempotencyRecord.body == token)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        logger.exception("could not release the claim on Idempotency-Key %r (%s)", key, scope)


def purge_expired(now: datetime | None = None) -> int:
    """Delete records older than IDEMPOTENCY_TTL_S (they are ignored already); return how many went."""
    cutoff = (now or utcnow()) - timedelta(seconds=int(current_app.config["IDEMPOTENCY_TTL_S"]))
    result = db.session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return int(result.rowcount or 0)
