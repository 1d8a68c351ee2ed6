"""Per-minute roll-ups in the database: counters added up from every process, gauges sampled, old minutes dropped."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import Tenant
from app.models.metric import MetricRollup
from app.services import metric_gauges
from app.services.live_counters import Key
from app.services.live_metrics import HOURLY, SUBSCRIPTION_FIGURES

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 7


def minute_of(epoch_s: float) -> datetime:
    """The UTC minute that holds ``epoch_s``, as an aware datetime."""
    sec = int(epoch_s)
    return datetime.fromtimestamp(sec - sec % 60, UTC)


def _upsert(rows: Sequence[dict[str, Any]], add: bool) -> None:
    """Insert rows; an existing (tenant, minute, metric, subject) is added to (counters) or replaced (gauges)."""
    if not rows:
        return
    dialect = db.engine.dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise RuntimeError(f"metric roll-ups need PostgreSQL or SQLite, not {dialect}")
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(MetricRollup)
    value = MetricRollup.value + stmt.excluded.value if add else stmt.excluded.value
    stmt = stmt.on_conflict_do_update(index_elements=["tenant_id", "minute", "metric", "subject"],
                                      set_={"value": value})
    # Sorted: concurrent flushes of several processes then lock rows in the same order (no deadlock).
    ordered = sorted(rows, key=lambda r: (r["tenant_id"], r["minute"], r["metric"], r["subject"]))
    db.session.execute(stmt, ordered)


def add_counts(minutes: Mapping[int, Counter[Key]]) -> int:
    """Add one process's per-minute counts into the roll-ups and commit; returns the rows written."""
    slugs = {slug for counts in minutes.values() for slug, _, _ in counts}
    if not slugs:
        return 0
    ids = {slug: tid for slug, tid in db.session.execute(select(Tenant.slug, Tenant.id).where(Tenant.slug.in_(slugs)))}
    rows = [
        {"tenant_id": ids[slug], "minute": datetime.fromtimestamp(minute, UTC), "metric": metric,
         "subject": subject, "value": float(n)}
        for minute, counts in minutes.items()
        for (slug, metric, subject), n in counts.items()
        if slug in ids and n  # a tenant deleted meanwhile takes its counts with it
    ]
    _upsert(_with_hours(rows), add=True)
    db.session.commit()
    return len(rows)


def _with_hours(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The minute rows, and the hourly sums of the figures kept by the hour too (``live_metrics.HOURLY``)."""
    hours: Counter[tuple[int, datetime, str, str]] = Counter()
    for row in rows:
        if row["metric"] in SUBSCRIPTION_FIGURES:
            at = row["minute"]
            hours[(row["tenant_id"], at - timedelta(minutes=at.minute), row["metric"] + HOURLY, row["subject"])] += \
                row["value"]
    return rows + [{"tenant_id": tid, "minute": at, "metric": metric, "subject": subject, "value": value}
                   for (tid, at, metric, subject), value in hours.items()]


def sample_gauges(now: float) -> int:
    """Record every tenant's lag per group and dead letters as the gauges of the current minute; commit."""
    minute = minute_of(now)
    tenants = metric_gauges.all_tenants()
    rows: list[dict[str, Any]] = []
    for tid, groups in metric_gauges.lag_by_tenant(tenants).items():
        rows += [{"tenant_id": tid, "minute": minute, "metric": metric_gauges.CONSUMER_LAG, "subject": subject,
                  "value": float(lag)} for subject, lag in groups.items()]
    dead = metric_gauges.dead_letters_by_tenant()
    rows += [{"tenant_id": tid, "minute": minute, "metric": metric_gauges.DEAD_LETTERS, "subject": "",
              "value": float(dead.get(tid, 0))} for tid in tenants]
    _upsert(rows, add=False)
    db.session.commit()
    return len(rows)


def prune(now: float, days: float = DEFAULT_RETENTION_DAYS) -> int:
    """Delete roll-ups older than ``days``; commit; returns how many went."""
    cutoff = minute_of(now) - timedelta(days=days)
    gone = db.session.execute(delete(MetricRollup).where(MetricRollup.minute < cutoff)
                              .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return int(gone or 0)


def history(tenant_id: int, since: datetime, until: datetime) -> list[tuple[datetime, str, str, float]]:
    """The tenant's roll-ups in ``[since, until)``: (minute as aware UTC, metric, subject, value), oldest first."""
    rows = db.session.execute(
        select(MetricRollup.minute, MetricRollup.metric, MetricRollup.subject, MetricRollup.value)
        .where(MetricRollup.tenant_id == tenant_id, MetricRollup.minute >= since, MetricRollup.minute < until)
        .order_by(MetricRollup.minute)
    ).tuples()
    # SQLite hands back naive datetimes; every stored minute is UTC.
    return [(m if m.tzinfo else m.replace(tzinfo=UTC), metric, subject, value) for m, metric, subject, value in rows]


def minutes_of(tenant_id: int, metrics: Sequence[str], subject: str,
               minutes: Sequence[datetime]) -> list[tuple[datetime, str, float]]:
    """One subject's figures at the given minutes: (minute as aware UTC, metric, value), oldest first.

    Asked minute by minute (``minute IN (...)``): each is a lookup of the primary key (tenant, minute, metric,
    subject), so the cost follows the minutes asked, not the tenant's other groups and streams in the window
    (a 1,000-group tenant writes 1,000 lag rows a minute; a range scan of a day would read 1.4 million).
    """
    if not minutes or not metrics:
        return []
    rows = db.session.execute(
        select(MetricRollup.minute, MetricRollup.metric, MetricRollup.value)
        .where(MetricRollup.tenant_id == tenant_id, MetricRollup.minute.in_(list(minutes)),
               MetricRollup.metric.in_(list(metrics)), MetricRollup.subject == subject)
        .order_by(MetricRollup.minute)
    ).tuples()
    return [(m if m.tzinfo else m.replace(tzinfo=UTC), metric, value) for m, metric, value in rows]
