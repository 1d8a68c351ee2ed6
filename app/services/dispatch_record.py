"""Recording delivery outcomes: the state a result leads to, delivery and attempt rows, subscription health.

Shared by the live dispatcher (new rows, one transaction per batch), the retry task and replay jobs
(updates of existing rows). Callers commit; nothing here talks HTTP.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from app.bus.delivery import AttemptResult, classify, next_delay
from app.extensions import db
from app.models import Delivery, DeliveryAttempt, Subscription
from app.models.base import new_id, utcnow
from app.models.delivery import DEAD, DISCARDED, ORIGIN_LIVE, RETRYING, SUCCEEDED, WAITING
from app.models.subscription import STATUS_ACTIVE, STATUS_DISABLED
from app.services import audit, metrics
from app.services.dispatch_config import DeliverySettings
from app.services.dispatch_copy import bulk_insert
from app.services.dispatch_send import SubSpec

logger = logging.getLogger(__name__)

# Outcome kinds of retry.classify, plus "held": never attempted in this round (ordering, 410).
SUCCESS, RETRY, DISABLE = "success", "retry", "disable"

_DELIVERIES, _ATTEMPTS = Delivery.__table__, DeliveryAttempt.__table__
IN_CHUNK = 500  # values per IN (...): well under every database's parameter limit

# Subscription success clocks: written at most this often by the live dispatcher (``after_attempts``).
HEALTH_WRITE_EVERY_S = 1.0
_success_written: dict[str, float] = {}  # subscription id -> time.monotonic() of this process's last write


@dataclass(slots=True)
class Item:
    """One event on its way to one subscription, and what became of it."""

    event_id: str
    event_type: str
    key: str | None
    partition: int
    offset: int
    body: bytes
    delivery_id: str = field(default_factory=new_id)
    attempts: int = 0  # attempts made so far, this one included once settled
    result: AttemptResult | None = None
    at: datetime | None = None
    status: str | None = None
    next_attempt_at: datetime | None = None
    kind: str | None = None


def settle(item: Item, result: AttemptResult, at: datetime, spec: SubSpec, settings: DeliverySettings,
           now: datetime | None = None) -> str:
    """Apply one attempt's result to the item (status, next attempt); returns the outcome kind."""
    item.result, item.at = result, at
    item.attempts += 1
    kind = classify(result.status_code)
    item.kind = kind
    if kind == SUCCESS:
        item.status, item.next_attempt_at = SUCCEEDED, None
    elif kind == DISABLE:
        item.status, item.next_attempt_at = DISCARDED, None
    else:
        delay = next_delay(spec.schedule, item.attempts, result.status_code, result.retry_after_s,
                           settings.retry_after_max_s)
        if delay is None:
            item.status, item.next_attempt_at = DEAD, None
        else:
            item.status, item.next_attempt_at = RETRYING, (now or utcnow()) + timedelta(seconds=delay)
    return kind


def _kept_body(item: Item) -> bytes | None:
    # Bodies are kept until delivered: retries, waiting items and dead letters need them; nothing else does.
    return item.body if item.status in (RETRYING, WAITING, DEAD) else None


def _attempt_rows(items: Iterable[Item]) -> list[dict[str, object]]:
    rows = []
    for item in items:
        r = item.result
        if r is None or item.at is None:
            continue
        rows.append({"delivery_id": item.delivery_id, "at": item.at, "duration_ms": round(r.duration_ms, 3),
                     "status_code": r.status_code, "response_excerpt": r.response_excerpt, "error": r.error})
    return rows


def insert_new(spec: SubSpec, items: Sequence[Item], origin: str = ORIGIN_LIVE, throttle_health: bool = False) -> None:
    """Insert a delivery row for every settled item (and its attempt), in the current transaction.

    ``throttle_health``: see ``after_attempts`` (the live dispatcher, which records many batches a second).
    """
    now = utcnow()
    rows = [{
        "id": i.delivery_id, "tenant_id": spec.tenant_id, "subscription_id": spec.id, "event_id": i.event_id,
        "event_type": i.event_type, "event_key": i.key, "partition": i.partition, "offset": i.offset,
        "status": i.status, "origin": origin, "attempts": i.attempts, "next_attempt_at": i.next_attempt_at,
        "last_status_code": i.result.status_code if i.result else None,
        "last_error": i.result.error if i.result else None, "body": _kept_body(i),
        "created_at": now, "updated_at": now,
    } for i in items if i.status is not None]
    # Straight into the tables (COPY on PostgreSQL), not through the ORM's bulk path: that cost more CPU per
    # row than the HTTP request of the delivery.
    bulk_insert(_DELIVERIES, rows)
    bulk_insert(_ATTEMPTS, _attempt_rows(items))
    # Checked after the inserts: by then SQLite's single writer is ours too, so no deletion can slip in between.
    if not _hold_subscription(spec.id):
        logger.info("subscription %s was deleted: %d sent deliveries not recorded", spec.id, len(rows))
        _forget(r["id"] for r in rows)  # as the deletion's trigger would have, had they been there
        return
    after_attempts(spec, items, throttle_health)


def update_existing(spec: SubSpec, items: Sequence[Item], origin: str | None = None,
                    only_status: str | None = None) -> int:
    """Write each attempted item's new state over its delivery row (guarded by ``only_status``); attempts too."""
    changed = 0
    for item in items:
        if item.result is None or item.status is None:
            continue
        values: dict[str, object] = {
            "status": item.status, "attempts": item.attempts, "next_attempt_at": item.next_attempt_at,
            "last_status_code": item.result.status_code, "last_error": item.result.error,
            "body": _kept_body(item), "updated_at": utcnow(),
        }
        if origin is not None and item.status == SUCCEEDED:
            values["origin"] = origin
        stmt = update(Delivery).where(Delivery.id == item.delivery_id)
        if only_status is not None:
            stmt = stmt.where(Delivery.status == only_status)
        changed += db.session.execute(stmt.values(**values).execution_options(synchronize_session=False)).rowcount
    # The attempt was made either way; it is kept unless its delivery is gone (purged, or deleted with its
    # subscription). Checked after the updates, as in ``insert_new``.
    present = _hold_deliveries([i.delivery_id for i in items if i.result is not None])
    bulk_insert(_ATTEMPTS, _attempt_rows(i for i in items if i.delivery_id in present))
    after_attempts(spec, items)
    return changed


def _hold_subscription(subscription_id: str) -> bool:
    """Keep the subscription from being deleted until this transaction ends; False when it is gone already.

    What the foreign key of every delivery row did, once per recording: a deletion waits for the recording to
    commit, and its trigger then deletes the new rows too (migration c4e7a91d3b20). SQLite has no row locks
    (the rendering drops FOR KEY SHARE); its single writer orders the two transactions instead.
    """
    return db.session.execute(select(Subscription.id).where(Subscription.id == subscription_id)
                              .with_for_update(read=True, key_share=True)).first() is not None


def _forget(ids: Iterable[str]) -> None:
    """Delete these deliveries of this transaction (their attempts go by trigger)."""
    todo = list(ids)
    for start in range(0, len(todo), IN_CHUNK):
        db.session.execute(delete(Delivery).where(Delivery.id.in_(todo[start:start + IN_CHUNK]))
                           .execution_options(synchronize_session=False))


def _hold_deliveries(ids: Sequence[str]) -> set[str]:
    """The ids of these deliveries that still exist, kept from deletion until this transaction ends (as above)."""
    present: set[str] = set()
    for start in range(0, len(ids), IN_CHUNK):
        present.update(db.session.execute(select(Delivery.id).where(Delivery.id.in_(ids[start:start + IN_CHUNK]))
                                          .with_for_update(read=True, key_share=True)).scalars())
    return present


def after_attempts(spec: SubSpec, items: Sequence[Item], throttle_health: bool = False) -> None:
    """Subscription health after a round of attempts: success clock, failing-since clock, 410 disables.

    ``throttle_health``: a success within ``HEALTH_WRITE_EVERY_S`` of one this process wrote for the
    subscription (with no failure written since) is not written again. Only the clocks lose precision
    (by that much, while deliveries keep succeeding); one UPDATE of the subscription row per batch was a
    few percent of the dispatcher's CPU and a dead row version per batch.
    """
    metrics.delivered(spec.stream, items, spec.id)  # Prometheus and the console's live charts
    kinds = {i.kind for i in items if i.result is not None}
    now = utcnow()
    if SUCCESS in kinds:
        clock = time.monotonic()
        if not throttle_health or clock - _success_written.get(spec.id, -HEALTH_WRITE_EVERY_S) >= HEALTH_WRITE_EVERY_S:
            db.session.execute(update(Subscription).where(Subscription.id == spec.id)
                               .values(last_success_at=now, failing_since=None)
                               .execution_options(synchronize_session=False))
            _success_written[spec.id] = clock
    elif RETRY in kinds:
        _success_written.pop(spec.id, None)  # the next success clears failing_since at once
        db.session.execute(update(Subscription)
                           .where(Subscription.id == spec.id, Subscription.failing_since.is_(None))
                           .values(failing_since=now).execution_options(synchronize_session=False))
    if DISABLE in kinds:
        code = next(i.result.status_code for i in items if i.kind == DISABLE and i.result)
        disable(spec.id, spec.tenant_id, f"the endpoint answered {code} Gone", {"status_code": code})


def disable(subscription_id: str, tenant_id: int, reason: str, details: dict[str, object] | None = None,
            discard: bool = True) -> bool:
    """Disable an active subscription, discard its pending deliveries (410), audit it; False if it was not active."""
    done = db.session.execute(
        update(Subscription).where(Subscription.id == subscription_id, Subscription.status == STATUS_ACTIVE)
        .values(status=STATUS_DISABLED, disabled_reason=reason, updated_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount
    if not done:
        return False
    discarded = 0 if not discard else db.session.execute(
        update(Delivery).where(Delivery.subscription_id == subscription_id, Delivery.status.in_((RETRYING, WAITING)))
        .values(status=DISCARDED, body=None, next_attempt_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount
    audit.record(None, "subscription.disable", "subscription", subscription_id,
                 {"reason": reason, "discarded": discarded, **(details or {})}, actor="system", tenant_id=tenant_id)
    logger.warning("subscription %s disabled: %s (%d pending deliveries discarded)", subscription_id, reason,
                   discarded)
    return True


def bury_waiting(subscription_id: str, key: str) -> int:
    """An ordered key's head died: every delivery waiting behind it joins the dead letters."""
    return db.session.execute(
        update(Delivery).where(Delivery.subscription_id == subscription_id, Delivery.event_key == key,
                               Delivery.status == WAITING)
        .values(status=DEAD, next_attempt_at=None, last_error="dead: an earlier event of its key died",
                updated_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount
