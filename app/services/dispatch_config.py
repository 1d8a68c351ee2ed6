"""Webhook delivery settings, read once from the app config (with environment fallbacks for new knobs)."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def setting(config: Mapping[str, Any], name: str, default: T, cast: Callable[[Any], T]) -> T:
    """``config[name]``, else the environment variable ``name``, else ``default``; passed through ``cast``."""
    # Knobs not (yet) declared in config.py are still settable from the environment (12-factor).
    value = config.get(name)
    if value is None:
        value = os.environ.get(name)
    if value is None or value == "":
        return default
    return cast(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DeliverySettings:
    """Everything the dispatcher, the retry task and replay jobs need from configuration."""

    timeout_s: float
    allow_private: bool
    default_schedule: tuple[float, ...]
    retry_after_max_s: float
    disable_after_s: float
    max_in_flight_cap: int
    # Partition leases: how long a claim lives without renewal (a dead worker's partitions move after this).
    lease_ttl_s: float
    # How often the dispatcher re-reads subscriptions and renews its leases (well under lease_ttl_s).
    refresh_s: float
    batch_size: int
    fetch_wait_s: float
    # An idle runner with wake-ups on publish (Redis) re-reads the log at least this often anyway.
    idle_poll_s: float
    retry_batch: int
    retry_budget_s: float
    replay_chunk: int
    dispatcher_enabled: bool
    # The worker process's GIL switch interval: the dispatcher's loop (HTTP) shares the GIL with its database
    # threads, and Python's default 5 ms turns every hand-over into up to 5 ms of delivery latency.
    switch_interval_s: float
    # How long a runner's recorder waits for more sent batches to merge into one recording transaction.
    record_linger_s: float
    # Redis holding each subscription's in-flight slots and rate tokens for every process (None: each process
    # applies the limits alone; live dispatchers then split them by partitions).
    limits_url: str | None = None


def settings(config: Mapping[str, Any]) -> DeliverySettings:
    """The settings of an app config."""
    timeout = setting(config, "WEBHOOK_TIMEOUT_S", 15.0, float)
    ttl = setting(config, "WEBHOOK_LEASE_TTL_S", 15.0, float)
    return DeliverySettings(
        timeout_s=timeout,
        allow_private=setting(config, "WEBHOOK_ALLOW_PRIVATE", False, _bool),
        default_schedule=tuple(float(v) for v in config.get("WEBHOOK_RETRY_SCHEDULE")
                               or (5, 300, 1800, 7200, 18000, 36000, 36000)),
        retry_after_max_s=setting(config, "WEBHOOK_RETRY_AFTER_MAX_S", 3600.0, float),
        disable_after_s=setting(config, "WEBHOOK_DISABLE_AFTER_S", 5 * 24 * 3600.0, float),
        max_in_flight_cap=setting(config, "WEBHOOK_MAX_IN_FLIGHT", 1000, int),
        lease_ttl_s=ttl,
        refresh_s=setting(config, "WEBHOOK_REFRESH_S", min(2.0, ttl / 3), float),
        batch_size=setting(config, "WEBHOOK_BATCH_SIZE", 500, int),
        fetch_wait_s=setting(config, "WEBHOOK_FETCH_WAIT_S", 1.0, float),
        idle_poll_s=setting(config, "WEBHOOK_IDLE_POLL_S", 0.1, float),
        retry_batch=setting(config, "WEBHOOK_RETRY_BATCH", 200, int),
        retry_budget_s=setting(config, "WEBHOOK_RETRY_BUDGET_S", 20.0, float),
        replay_chunk=setting(config, "WEBHOOK_REPLAY_CHUNK", 50, int),
        dispatcher_enabled=setting(config, "WEBHOOK_DISPATCHER", True, _bool),
        switch_interval_s=setting(config, "WEBHOOK_SWITCH_INTERVAL_S", 0.001, float),
        record_linger_s=setting(config, "WEBHOOK_RECORD_LINGER_S", 0.2, float),
        limits_url=(config.get("REDIS_URL") or None) if setting(config, "WEBHOOK_SHARED_LIMITS", True, _bool) else None,
    )
