"""Figures read from state rather than counted: consumer lag per group and dead letters per tenant.

The live dashboard reads them every second for the tenants being watched, beat samples them once a
minute for every tenant (the roll-ups), and Prometheus reads them at each scrape.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

from flask import current_app, has_app_context
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from sqlalchemy import func, select

from app.bus.log.sql_schema import group_offsets, log_partitions, log_streams
from app.extensions import db
from app.models import Delivery, Stream, Tenant
from app.models.delivery import DEAD
from app.services.event_log import event_log

logger = logging.getLogger(__name__)

CONSUMER_LAG, DEAD_LETTERS = "consumer_lag", "dead_letters"
_lp, _ls, _go = log_partitions.c, log_streams.c, group_offsets.c


def lag_by_tenant(tenants: Mapping[int, str]) -> dict[int, dict[str, int]]:
    """``{tenant id: {"<stream>/<group>": lag}}`` for the groups of ``tenants`` (id -> slug) on their live streams."""
    if not tenants:
        return {}
    names: dict[int, set[str]] = {tid: set() for tid in tenants}
    for tid, name in db.session.execute(select(Stream.tenant_id, Stream.name).where(Stream.tenant_id.in_(tenants))):
        names[tid].add(name)
    if current_app.config.get("EVENT_LOG_URL", "sql") == "sql":
        return _lag_from_sql_log(tenants, names)
    return _lag_from_protocol(tenants, names)


def _lag_from_sql_log(tenants: Mapping[int, str], names: Mapping[int, set[str]]) -> dict[int, dict[str, int]]:
    """Every group's lag in two queries, whatever the number of groups (the SQL log in the application database).

    Asked group by group, 1,000 groups would cost 1,000 queries a sample, and the live dashboard samples the
    tenants it shows every second.
    """
    owner = {f"{tenants[tid]}.{name}": (tid, name) for tid, stream_names in names.items() for name in stream_names}
    out: dict[int, dict[str, int]] = {tid: {} for tid in tenants}
    if not owner:
        return out
    marks: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for log_name, partition, low, high in db.session.execute(
            select(_ls.name, _lp.partition, _lp.low, _lp.next_offset)
            .join_from(log_partitions, log_streams, _ls.id == _lp.stream_id).where(_ls.name.in_(owner))):
        marks[log_name][partition] = (low, high)
    committed: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for group, log_name, partition, offset in db.session.execute(
            select(_go.group_name, _ls.name, _go.partition, _go.offset)
            .join_from(group_offsets, log_streams, _ls.id == _go.stream_id).where(_ls.name.in_(owner))):
        committed[(log_name, group)][partition] = offset
    for (log_name, group), offsets in sorted(committed.items()):
        tid, stream_name = owner[log_name]
        slug = tenants[tid]
        if not group.startswith(slug + "."):
            continue  # another tenant's group on this stream name cannot exist, but the prefix is the proof
        # The SQL log's rule (sql_groups.lag): a partition never committed lags from its low watermark.
        lag = sum(high - offsets.get(p, low) for p, (low, high) in marks[log_name].items())
        out[tid][f"{stream_name}/{group[len(slug) + 1:]}"] = lag
    return out


def _lag_from_protocol(tenants: Mapping[int, str], names: Mapping[int, set[str]]) -> dict[int, dict[str, int]]:
    """Every group's lag through the EventLog protocol: one admin round trip per group (Kafka)."""
    by_slug = {slug: tid for tid, slug in tenants.items()}
    log = event_log()
    out: dict[int, dict[str, int]] = {tid: {} for tid in tenants}
    # One listing for every tenant watched: the log is shared, and a group's name starts with its tenant's slug
    # (slugs hold no dots), exactly as app/services/groups.py names them.
    for group, stream in log.groups():
        slug, _, group_name = group.partition(".")
        tid = by_slug.get(slug)
        if tid is None or not stream.startswith(slug + "."):
            continue
        stream_name = stream[len(slug) + 1:]
        if stream_name not in names[tid]:
            continue  # a deleted stream's offsets linger in some backends
        try:
            out[tid][f"{stream_name}/{group_name}"] = sum(p.lag for p in log.lag(group, stream))
        except Exception:  # noqa: BLE001 - one unreadable group must not blank the whole dashboard
            logger.warning("lag of %s on %s unavailable", group, stream, exc_info=True)
    return out


def dead_letters_by_tenant(tenant_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Dead letters waiting per tenant (all tenants when ``tenant_ids`` is None)."""
    query = select(Delivery.tenant_id, func.count()).where(Delivery.status == DEAD).group_by(Delivery.tenant_id)
    if tenant_ids is not None:
        ids = list(tenant_ids)
        if not ids:
            return {}
        query = query.where(Delivery.tenant_id.in_(ids))
    return {tid: int(n) for tid, n in db.session.execute(query)}


def all_tenants() -> dict[int, str]:
    """Every tenant, id -> slug."""
    return {tid: slug for tid, slug in db.session.execute(select(Tenant.id, Tenant.slug))}


class GaugeCollector:
    """Prometheus collector of lag and dead letters, read at scrape time inside the request's app context."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families, without reading anything (registration calls this)."""
        yield from self._families()

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        lag = GaugeMetricFamily("bus_consumer_lag", "Events behind the end of the stream, per consumer group.",
                                labels=["tenant", "stream", "group"])
        dead = GaugeMetricFamily("bus_dead_letters", "Dead-lettered deliveries waiting for replay.", labels=["tenant"])
        return lag, dead

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Current lag and dead letters of every tenant."""
        lag, dead = self._families()
        if has_app_context():
            try:
                tenants = all_tenants()
                for tid, groups in lag_by_tenant(tenants).items():
                    for subject, value in groups.items():
                        stream, _, group = subject.partition("/")
                        lag.add_metric([tenants[tid], stream, group], value)
                counts = dead_letters_by_tenant()
                for tid, slug in tenants.items():
                    dead.add_metric([slug], counts.get(tid, 0))
            except Exception:  # noqa: BLE001 - a scrape answers with what it has; the counters still matter
                logger.warning("gauges unavailable for /metrics", exc_info=True)
        yield lag
        yield dead


_registered = threading.Lock()
_collector: GaugeCollector | None = None


def register_collector() -> None:
    """Register the gauge collector with Prometheus once per process."""
    global _collector
    with _registered:
        if _collector is None:
            _collector = GaugeCollector()
            REGISTRY.register(_collector)
