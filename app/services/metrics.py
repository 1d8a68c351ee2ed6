"""Prometheus counters of the data plane (published, read, fetched events); exposed at ``/metrics``."""
from __future__ import annotations

import logging

from prometheus_client import Counter

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


def published(tenant: str, stream: str, count: int) -> None:
    """Count ``count`` events published to ``tenant``/``stream``."""
    EVENTS_PUBLISHED.labels(tenant, stream).inc(count)


def fetched(tenant: str, stream: str, count: int) -> None:
    """Count events returned by a group fetch."""
    if count:
        EVENTS_FETCHED.labels(tenant, stream).inc(count)
