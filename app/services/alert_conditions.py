"""What each alert kind measures, and when the measure breaches the rule's threshold.

Every measure reads state that every process shares (the event log, the deliveries table, the minute
roll-ups, the heartbeats), so any worker may evaluate any rule. ``None`` means "cannot be measured now"
(a stream or subscription deleted): treated as not breached, so an alert about a vanished thing resolves.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import Select, case, func, select

from app.bus.log import StreamNotFound
from app.extensions import db
from app.models import AlertRule, Delivery, DeliveryAttempt, MetricRollup, Stream, Subscription
from app.models.delivery import DEAD
from app.models.subscription import STATUS_DISABLED, consumer_group_name
from app.services import alert_heartbeats
from app.services.alert_targets import (
    CONSUMER_LAG,
    DEAD_LETTER_RATE,
    DEAD_LETTERS,
    FAILURE_RATE,
    SUBSCRIPTION_DISABLED,
    THROUGHPUT_ABOVE,
    THROUGHPUT_BELOW,
    WORKER_SILENT,
)
from app.services.dispatch_config import setting
from app.services.event_log import event_log
from app.services.live_metrics import EVENTS_IN
from app.services.metric_rollups import minute_of
from app.services.windows import as_utc

logger = logging.getLogger(__name__)


def breached(kind: str, value: float | None, threshold: float) -> bool:
    """True when ``value`` is on the wrong side of ``threshold`` (below for throughput_below, above otherwise)."""
    if value is None:
        return False
    return value < threshold if kind == THROUGHPUT_BELOW else value > threshold


def _stream_id(tenant_id: int, name: str) -> str | None:
    return db.session.execute(select(Stream.id).where(Stream.tenant_id == tenant_id, Stream.name == name)
                              ).scalar_one_or_none()


def _scoped(query: Select, rule: AlertRule) -> Select | None:
    """``query`` over deliveries narrowed to the rule's subscription or stream (None: the stream is gone)."""
    target = rule.target or {}
    if target.get("subscription"):
        return query.where(Delivery.subscription_id == target["subscription"])
    if target.get("stream"):
        stream_id = _stream_id(rule.tenant_id, target["stream"])
        if stream_id is None:
            return None
        subs = select(Subscription.id).where(Subscription.tenant_id == rule.tenant_id,
                                             Subscription.stream_id == stream_id)
        return query.where(Delivery.subscription_id.in_(subs))
    return query


def consumer_lag(rule: AlertRule, slug: str) -> float | None:
    """Events behind the end of the stream, over all partitions, for a group or a subscription."""
    target = rule.target or {}
    if target.get("subscription"):
        sub = db.session.execute(select(Subscription).where(Subscription.tenant_id == rule.tenant_id,
                                                            Subscription.id == target["subscription"])
                                 ).scalar_one_or_none()
        if sub is None:
            return None
        group, stream = consumer_group_name(slug, sub.id), f"{slug}.{sub.stream.name}"
    else:
        if _stream_id(rule.tenant_id, target["stream"]) is None:
            return None
        group, stream = f"{slug}.{target['group']}", f"{slug}.{target['stream']}"
    try:
        return float(sum(p.lag for p in event_log().lag(group, stream)))
    except StreamNotFound:
        return None


def dead_letters(rule: AlertRule, since: datetime | None = None) -> float | None:
    """Dead letters waiting (those that became dead since ``since``, when given)."""
    query = select(func.count()).select_from(Delivery).where(Delivery.tenant_id == rule.tenant_id,
                                                             Delivery.status == DEAD)
    if since is not None:
        query = query.where(Delivery.updated_at >= since)  # the time a delivery became dead (dead_letter_query)
    scoped = _scoped(query, rule)
    return None if scoped is None else float(db.session.execute(scoped).scalar_one())


def dead_letter_rate(rule: AlertRule, now: datetime) -> float | None:
    """Dead letters per minute over the last ``window_s``."""
    count = dead_letters(rule, since=now - timedelta(seconds=rule.window_s))
    return None if count is None else count / (rule.window_s / 60.0)


def failure_rate(rule: AlertRule, now: datetime) -> float | None:
    """Percent of delivery attempts in the last ``window_s`` that were not a 2xx (0 with no attempts)."""
    ok = case((DeliveryAttempt.status_code.between(200, 299), 0), else_=1)
    query = (select(func.count(), func.coalesce(func.sum(ok), 0)).select_from(DeliveryAttempt)
             .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
             .where(Delivery.tenant_id == rule.tenant_id,
                    DeliveryAttempt.at >= now - timedelta(seconds=rule.window_s), DeliveryAttempt.at <= now))
    scoped = _scoped(query, rule)
    if scoped is None:
        return None
    total, failed = db.session.execute(scoped).one()
    return 0.0 if not total else 100.0 * float(failed) / float(total)


def throughput(rule: AlertRule, now: datetime) -> float | None:
    """Events in per second over the last ``window_s`` of complete, flushed minutes of the roll-ups."""
    name = (rule.target or {})["stream"]
    if _stream_id(rule.tenant_id, name) is None:
        return None
    # A minute reaches the database up to METRICS_FLUSH_S after it ends: only minutes surely flushed count.
    flush_s = setting(current_app.config, "METRICS_FLUSH_S", 10.0, float)
    end = minute_of((now - timedelta(seconds=flush_s + 5)).timestamp())
    # Minute by minute (IN): primary-key look-ups, whatever the tenant's other streams and groups write per minute.
    minutes = [end - timedelta(minutes=n) for n in range(1, max(1, rule.window_s // 60) + 1)]
    total = db.session.execute(
        select(func.coalesce(func.sum(MetricRollup.value), 0.0))
        .where(MetricRollup.tenant_id == rule.tenant_id, MetricRollup.minute.in_(minutes),
               MetricRollup.metric == EVENTS_IN, MetricRollup.subject == name)
    ).scalar_one()
    return float(total) / (60.0 * len(minutes))  # window_s in whole minutes


def subscriptions_disabled(rule: AlertRule) -> float | None:
    """How many of the rule's subscriptions (one, a stream's, or the tenant's) are disabled."""
    target = rule.target or {}
    query = select(func.count()).select_from(Subscription).where(Subscription.tenant_id == rule.tenant_id,
                                                                 Subscription.status == STATUS_DISABLED)
    if target.get("subscription"):
        query = query.where(Subscription.id == target["subscription"])
    elif target.get("stream"):
        stream_id = _stream_id(rule.tenant_id, target["stream"])
        if stream_id is None:
            return None
        query = query.where(Subscription.stream_id == stream_id)
    return float(db.session.execute(query).scalar_one())


def silence_s(rule: AlertRule, now: datetime) -> float:
    """Seconds since the last heartbeat of the target process (never seen: since the rule was created)."""
    target = rule.target or {}
    seen = alert_heartbeats.last_seen(target["process"], target.get("name"))
    since = seen if seen is not None else as_utc(rule.created_at)
    return max(0.0, (now - since).total_seconds())


def measure(rule: AlertRule, slug: str, now: datetime) -> float | None:
    """The rule's current value."""
    now = now.astimezone(UTC)
    kind = rule.kind
    if kind == CONSUMER_LAG:
        return consumer_lag(rule, slug)
    if kind == DEAD_LETTERS:
        return dead_letters(rule)
    if kind == DEAD_LETTER_RATE:
        return dead_letter_rate(rule, now)
    if kind == FAILURE_RATE:
        return failure_rate(rule, now)
    if kind in (THROUGHPUT_ABOVE, THROUGHPUT_BELOW):
        return throughput(rule, now)
    if kind == SUBSCRIPTION_DISABLED:
        return subscriptions_disabled(rule)
    if kind == WORKER_SILENT:
        return silence_s(rule, now)
    raise ValueError(f"unknown alert kind {kind!r}")
