"""Prometheus counters of the data plane (published, read, fetched events, deliveries); exposed at ``/metrics``."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter

from app.models.delivery import DEAD, SUCCEEDED
from app.services import live_metrics

logger = logging.getLogger(__name__)

# Labels are tenant slug and stream name: bounded by what operators create, never by event content.
EVENTS_PUBLISHED = Counter(
    "bus_events_published_total", "Events appended through the REST API.", ["tenant", "stream"]
)
EVENTS_FETCHED = Counter(
    "bus_events_fetched_total", "Events handed to pull consumer groups (re-deliveries included).",
    ["tenant", "stream"],
)
IDEMPOTENT_REPLAYS = Counter(
    "bus_idempotent_replays_total", "Publish requests answered from a stored Idempotency-Key response.",
    ["tenant"],
)
DELIVERIES = Counter(
    "bus_deliveries_total", "Webhook delivery attempts by outcome (succeeded, failed).",
    ["tenant", "stream", "outcome"],
)
DEAD_LETTERED = Counter(
    "bus_dead_lettered_total", "Deliveries that ran out of attempts and became dead letters.", ["tenant", "stream"],
)


def published(tenant: str, stream: str, count: int) -> None:
    """Count ``count`` events published to ``tenant``/``stream``."""
    EVENTS_PUBLISHED.labels(tenant, stream).inc(count)
    live_metrics.count(tenant, live_metrics.EVENTS_IN, stream, count)  # the console's live charts


def fetched(tenant: str, stream: str, count: int) -> None:
    """Count events returned by a group fetch."""
    if count:
        EVENTS_FETCHED.labels(tenant, stream).inc(count)


def delivered(log_stream: str, items: Iterable[Any], subscription: str | None = None) -> None:
    """Count a round of delivery attempts on ``<tenant>.<stream>`` (items settled by ``dispatch_record.settle``),
    and per ``subscription`` (its id) when given: the console's success-rate and latency charts."""
    ok = failed = dead = 0
    duration_ms = 0.0
    for item in items:
        if item.result is None:
            continue  # held back this round (ordering): not an attempt
        duration_ms += item.result.duration_ms
        if item.status == SUCCEEDED:
            ok += 1
        else:
            failed += 1
            dead += item.status == DEAD
    tenant, _, stream = log_stream.partition(".")  # tenant slugs hold no dots
    for outcome, n, metric in (("succeeded", ok, live_metrics.DELIVERIES_OK),
                               ("failed", failed, live_metrics.DELIVERIES_FAILED)):
        if n:
            DELIVERIES.labels(tenant, stream, outcome).inc(n)
            live_metrics.count(tenant, metric, stream, n)
    if subscription is not None and ok + failed:
        for metric, n in ((live_metrics.SUB_OK, ok), (live_metrics.SUB_FAILED, failed),
                          (live_metrics.SUB_LATENCY_MS, duration_ms)):
            live_metrics.count(tenant, metric, subscription, n)
    if dead:
        DEAD_LETTERED.labels(tenant, stream).inc(dead)
        live_metrics.count(tenant, live_metrics.DEAD_LETTERED, stream, dead)
