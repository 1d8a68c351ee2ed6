"""Due retries (beat, every second or so), releasing ordered keys, and disabling subscriptions failing too long.

A run claims due deliveries by moving their ``next_attempt_at`` past the attempt (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so concurrent runs on several workers take disjoint rows; on SQLite the claim
is one UPDATE, which SQLite serialises). A worker dying mid-send leaves the claim to expire: the
delivery is due again then. Nothing is held in memory or in Celery between attempts.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import aliased, joinedload

from app.extensions import db
from app.models import Delivery, Stream, Subscription
from app.models.base import utcnow
from app.models.delivery import DEAD, RETRYING, WAITING
from app.models.subscription import STATUS_ACTIVE
from app.services.dispatch_config import DeliverySettings, settings
from app.services.dispatch_record import Item, bury_waiting, disable, settle, update_existing
from app.services.dispatch_send import Courier, SubSpec, refused, run_sync, spec_of

logger = logging.getLogger(__name__)


def release_waiting() -> int:
    """For each ordered key with nothing retrying or dead any more, make its oldest waiting delivery due now."""
    blocker = aliased(Delivery)
    blocked = exists().where(blocker.subscription_id == Delivery.subscription_id,
                             blocker.event_key == Delivery.event_key, blocker.status.in_((RETRYING, DEAD)))
    heads = (select(Delivery.subscription_id, Delivery.event_key, func.min(Delivery.partition).label("p"))
             .where(Delivery.status == WAITING, ~blocked)
             .group_by(Delivery.subscription_id, Delivery.event_key)).subquery()
    released = 0
    for sub_id, key, partition in db.session.execute(select(heads.c.subscription_id, heads.c.event_key, heads.c.p)):
        first = db.session.execute(
            select(Delivery.id).where(Delivery.subscription_id == sub_id, Delivery.event_key == key,
                                      Delivery.partition == partition, Delivery.status == WAITING)
            .order_by(Delivery.offset).limit(1)).scalar_one_or_none()
        if first is None:
            continue
        released += db.session.execute(
            update(Delivery).where(Delivery.id == first, Delivery.status == WAITING)
            .values(status=RETRYING, next_attempt_at=utcnow(), updated_at=utcnow())
            .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return released


def claim_due(limit: int, claim_s: float) -> tuple[list[str], datetime]:
    """Claim up to ``limit`` due retries of active subscriptions; their ids and the claim's end."""
    now = utcnow()
    until = now + timedelta(seconds=claim_s)
    due = (select(Delivery.id).join(Subscription, Subscription.id == Delivery.subscription_id)
           .where(Delivery.status == RETRYING, Delivery.next_attempt_at <= now,
                  Subscription.status == STATUS_ACTIVE)
           .order_by(Delivery.next_attempt_at).limit(limit))
    if db.engine.dialect.name == "postgresql":
        due = due.with_for_update(of=Delivery, skip_locked=True)
    ids = list(db.session.execute(
        update(Delivery).where(Delivery.id.in_(due.scalar_subquery()), Delivery.status == RETRYING,
                               Delivery.next_attempt_at <= now)
        .values(next_attempt_at=until).returning(Delivery.id)
        .execution_options(synchronize_session=False)).scalars())
    db.session.commit()
    return ids, until


def _load(ids: list[str], config: DeliverySettings) -> tuple[dict[str, SubSpec], list[tuple[str, Item]]]:
    rows = db.session.execute(select(Delivery).where(Delivery.id.in_(ids))
                              .order_by(Delivery.partition, Delivery.offset)).scalars().all()
    sub_ids = {r.subscription_id for r in rows}
    subs = db.session.execute(select(Subscription).where(Subscription.id.in_(sub_ids))
                              .options(joinedload(Subscription.stream).joinedload(Stream.tenant))).scalars()
    specs: dict[str, SubSpec] = {}
    for sub in subs:
        try:
            specs[sub.id] = spec_of(sub, config)
        except Exception as exc:  # noqa: BLE001 - bad filter or unreadable secret: leave its rows claimed
            logger.error("subscription %s cannot be delivered: %s", sub.id, exc)
    items = []
    for r in rows:
        if r.subscription_id in specs and r.body is not None:
            items.append((r.subscription_id, Item(r.event_id, r.event_type, r.event_key, r.partition, r.offset,
                                                  bytes(r.body), delivery_id=r.id, attempts=r.attempts)))
    db.session.rollback()
    return specs, items


async def _send_all(specs: dict[str, SubSpec], items: list[tuple[str, Item]], courier: Courier,
                    config: DeliverySettings) -> None:
    refusals = {sub_id: await courier.url_refusal(spec) for sub_id, spec in specs.items()}

    async def one(sub_id: str, item: Item) -> None:
        spec = specs[sub_id]
        at = utcnow()
        reason = refusals[sub_id]
        result = refused(reason) if reason else await courier.send(spec, item.event_id, item.body)
        if result is not None:
            settle(item, result, at, spec, config)

    await asyncio.gather(*(one(sub_id, item) for sub_id, item in items))


def retry_due(limit: int | None = None, budget_s: float | None = None) -> int:
    """Send the due retries until none is left or the time budget is spent; how many attempts were made."""
    config = settings(current_app.config)
    limit = limit or config.retry_batch
    budget = config.retry_budget_s if budget_s is None else budget_s
    deadline = time.monotonic() + budget
    made = 0
    while time.monotonic() < deadline:
        release_waiting()
        ids, _claim = claim_due(limit, config.timeout_s + 30)
        if not ids:
            break
        specs, items = _load(ids, config)
        run_sync(config, lambda courier, s=specs, i=items: _send_all(s, i, courier, config))
        _record(specs, items)
        made += len(items)
    return made


def _record(specs: dict[str, SubSpec], items: list[tuple[str, Item]]) -> None:
    by_sub: dict[str, list[Item]] = defaultdict(list)
    for sub_id, item in items:
        by_sub[sub_id].append(item)
    try:
        for sub_id, sub_items in by_sub.items():
            spec = specs[sub_id]
            update_existing(spec, sub_items, only_status=RETRYING)
            if spec.ordered:
                for item in sub_items:
                    if item.status == DEAD and item.key is not None:
                        bury_waiting(spec.id, item.key)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise


def disable_failing(now: datetime | None = None) -> int:
    """Disable subscriptions failing with no success for WEBHOOK_DISABLE_AFTER_S (audited); how many."""
    config = settings(current_app.config)
    cutoff = (now or utcnow()) - timedelta(seconds=config.disable_after_s)
    rows = db.session.execute(
        select(Subscription.id, Subscription.tenant_id, Subscription.failing_since)
        .where(Subscription.status == STATUS_ACTIVE, Subscription.failing_since.is_not(None),
               Subscription.failing_since <= cutoff,
               (Subscription.last_success_at.is_(None)) | (Subscription.last_success_at < Subscription.failing_since))
    ).all()
    count = 0
    days = config.disable_after_s / 86400
    for sub_id, tenant_id, since in rows:
        # Pending retries are kept (not discarded as after a 410): resuming the subscription sends them.
        if disable(sub_id, tenant_id, f"failing without a success for {days:g} days",
                   {"failing_since": since.isoformat()}, discard=False):
            count += 1
    db.session.commit()
    return count

