"""Delivery-history retention: beat's ``maintenance.purge_deliveries`` deletes old settled deliveries.

Every delivery writes a ``deliveries`` row and a ``delivery_attempts`` row per attempt; without a purge both
grow without bound. Deliveries that are ``succeeded`` or ``discarded`` and were last updated more than
``DELIVERY_RETENTION_DAYS`` (30) ago are deleted with their attempts; 0 turns the purge off. Dead letters
(``dead``) are the operator's to replay or delete, and ``retrying`` / ``waiting`` are still pending: this
purge never touches them.

How a run works: per tenant (from ``tenants``) and per purged status, it deletes chunks of rows found
through ``ix_deliveries_tenant_status (tenant_id, status, updated_at)`` — equality on the first two
columns, a range on the third, oldest first — and commits each chunk, so locks and transactions stay
short under a full dispatch load. It stops once its time budget is spent, after at least one non-empty
chunk (so a run always makes progress); the next run picks up where the rows are.

Attempts go with their delivery through the ``deliveries_delete_attempts`` trigger (migration c4e7a91d3b20;
it replaced the foreign key's ``ON DELETE CASCADE``, which checked every attempt row the dispatcher wrote),
on PostgreSQL and SQLite alike (``tests/integration/webhooks/test_delivery_retention.py`` checks that the
attempts are gone).

Chunks are picked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite has no row locks and ignores it):
two overlapping runs take disjoint rows instead of waiting on, or deadlocking with, each other.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from itertools import product

from flask import current_app
from sqlalchemy import Select, delete, select

from app.extensions import db
from app.models import Delivery, Tenant
from app.models.base import utcnow
from app.models.delivery import DISCARDED, SUCCEEDED
from app.services.dispatch_config import setting

logger = logging.getLogger(__name__)

# Settled and of no further interest to an operator. Never DEAD (dead letters), RETRYING or WAITING.
PURGED_STATES = (SUCCEEDED, DISCARDED)
DEFAULT_RETENTION_DAYS = 30


def retention_days() -> int:
    """``DELIVERY_RETENTION_DAYS`` of the current app (0 or less: no purge)."""
    return setting(current_app.config, "DELIVERY_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, int)


def chunk_ids(tenant_id: int, status: str, cutoff: datetime, chunk: int) -> Select[tuple[str]]:
    """The ids of up to ``chunk`` deliveries of one tenant and status last updated before ``cutoff``, oldest
    first: a range scan of ``ix_deliveries_tenant_status``."""
    table = Delivery.__table__
    return (select(table.c.id)
            .where(table.c.tenant_id == tenant_id, table.c.status == status, table.c.updated_at < cutoff)
            .order_by(table.c.updated_at)
            .limit(chunk)
            .with_for_update(skip_locked=True))


def _delete_chunk(tenant_id: int, status: str, cutoff: datetime, chunk: int) -> int:
    """Delete one chunk (their attempts by cascade) and commit; how many deliveries went."""
    table = Delivery.__table__
    try:
        result = db.session.execute(delete(table).where(table.c.id.in_(chunk_ids(tenant_id, status, cutoff, chunk))))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return int(result.rowcount or 0)


def purge_old_deliveries(now: datetime | None = None, budget_s: float = 20.0, chunk: int = 5000) -> int:
    """Delete succeeded and discarded deliveries (and their attempts) older than the retention; how many.

    Stops when ``budget_s`` is spent, but only after at least one chunk deleted something: the next run
    continues from there.
    """
    days = retention_days()
    if days <= 0:
        logger.debug("delivery retention disabled (DELIVERY_RETENTION_DAYS=%s)", days)
        return 0
    chunk = max(1, int(chunk))
    started = time.monotonic()
    deadline = started + max(0.0, budget_s)
    cutoff = (now or utcnow()) - timedelta(days=days)
    tenant_ids = list(db.session.execute(select(Tenant.id).order_by(Tenant.id)).scalars())
    db.session.rollback()  # end the read transaction: each chunk is its own
    deleted = chunks = 0
    complete = True
    for tenant_id, status in product(tenant_ids, PURGED_STATES):
        while True:
            if chunks and time.monotonic() >= deadline:
                complete = False
                break
            n = _delete_chunk(tenant_id, status, cutoff, chunk)
            if n:
                chunks += 1
                deleted += n
            if n < chunk:
                break
        if not complete:
            break
    logger.info("delivery retention: deleted %d deliveries (%s) last updated before %s in %d chunks, "
                "%.2f s; %s", deleted, "/".join(PURGED_STATES), cutoff.isoformat(), chunks,
                time.monotonic() - started, "done" if complete else "budget spent, the next run continues")
    return deleted
