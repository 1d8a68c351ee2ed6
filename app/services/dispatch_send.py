"""Sending deliveries: a subscription snapshot, the webhook body, and a courier that signs, limits and POSTs.

The body is the event as CloudEvents structured JSON, exactly as it was published (``event_to_json``
without null attributes), and NOT the log position (partition, offset, log time): the same event must
be the same bytes on every attempt, in a dead-letter replay (from the stored body) and in a recover
(re-read from the log), whichever backend or partition count the stream has by then. Receivers
deduplicate on ``webhook-id`` (the event id), which is the same everywhere.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import orjson

from app.bus.delivery import (
    AttemptResult,
    EventFilter,
    TokenBucket,
    UnsafeUrl,
    WebhookSender,
    check_url_async,
    compile_filter,
    type_matcher,
    webhook_headers,
)
from app.bus.envelope import Event, event_to_json
from app.models import Subscription
from app.services.delivery_limits import SharedLimiter, SharedSlots, SharedTokens
from app.services.dispatch_config import DeliverySettings
from app.services.webhook_secrets import live_secrets

logger = logging.getLogger(__name__)

T = TypeVar("T")
# How long the SSRF verdict on a URL (its DNS answer) is reused: under the sender's DNS cache TTL (10 s).
URL_CHECK_TTL_S = 5.0


@dataclass(frozen=True)
class SubSpec:
    """What delivering to a subscription needs, detached from the ORM (read by threads and the event loop)."""

    id: str
    tenant_id: int
    stream: str  # the log name, <tenant>.<stream>
    partitions: int
    group: str
    url: str
    ordered: bool
    max_in_flight: int
    rate_limit_per_s: float | None
    schedule: tuple[float, ...]
    timeout_s: float
    event_types: tuple[str, ...] | None
    filter_expr: str | None
    secrets: tuple[str, ...]
    type_ok: Callable[[str], bool]
    event_filter: EventFilter
    # The subscription's own (max_in_flight, rate_limit_per_s) when the two above are a dispatcher's share.
    whole: tuple[int, float | None] | None = None

    @property
    def whole_limits(self) -> tuple[int, float | None]:
        """The subscription's limits, for what every sender shares (``delivery_limits``)."""
        return self.whole or (self.max_in_flight, self.rate_limit_per_s)

    def matches(self, event: Event, view: Mapping[str, Any] | None = None) -> bool:
        """True when the event passes the type globs and the CEL filter."""
        if not self.type_ok(event.type):
            return False
        if self.filter_expr is None:
            return True
        return self.event_filter.matches(view if view is not None else event_to_json(event))

    def same_settings(self, other: SubSpec) -> bool:
        """True when nothing the courier caches (concurrency, rate) changed."""
        return ((self.max_in_flight, self.rate_limit_per_s, self.whole)
                == (other.max_in_flight, other.rate_limit_per_s, other.whole))


def spec_of(sub: Subscription, settings: DeliverySettings, now: datetime | None = None) -> SubSpec:
    """A snapshot of ``sub`` (its stream and tenant loaded); FilterError / SecretKeyError when unusable."""
    stream = sub.stream
    return SubSpec(
        id=sub.id,
        tenant_id=sub.tenant_id,
        stream=stream.log_name,
        partitions=stream.partitions,
        group=sub.consumer_group,
        url=sub.url,
        ordered=bool(sub.ordered),
        max_in_flight=max(1, min(int(sub.max_in_flight or 10), settings.max_in_flight_cap)),
        rate_limit_per_s=sub.rate_limit_per_s or None,
        schedule=tuple(float(s) for s in (sub.retry_schedule or settings.default_schedule)),
        timeout_s=float(sub.timeout_s or settings.timeout_s),
        event_types=tuple(sub.event_types) if sub.event_types else None,
        filter_expr=sub.filter or None,
        secrets=tuple(live_secrets(sub, now)),
        type_ok=type_matcher(sub.event_types),
        event_filter=compile_filter(sub.filter),
    )


def share_of(spec: SubSpec, held: int) -> SubSpec:
    """The subscription as a dispatcher holding ``held`` of its partitions serves it.

    ``max_in_flight`` and ``rate_limit_per_s`` are the subscription's, not each worker's: a dispatcher gets
    its partitions' share of both (in flight rounded down, at least 1), so that several dispatchers
    together stay within them. The share follows the partitions, not their traffic: with uneven
    partitions the subscription as a whole may stay below its limits, never above (but for the minimum of
    one request in flight per dispatcher).
    """
    if held <= 0 or held >= spec.partitions:
        return spec
    part = held / spec.partitions
    return replace(spec, max_in_flight=max(1, math.floor(spec.max_in_flight * part)),
                   rate_limit_per_s=spec.rate_limit_per_s * part if spec.rate_limit_per_s else None,
                   whole=spec.whole_limits)


def body_of(event: Event) -> bytes:
    """The webhook body: CloudEvents structured JSON, absent attributes left out."""
    return orjson.dumps(event_to_json(event, omit_absent=True))


def refused(reason: str) -> AttemptResult:
    """An attempt that never left: the SSRF guard refused the URL at delivery time."""
    return AttemptResult(None, 0.0, None, f"refused: {reason}"[:1000], None)


@dataclass
class _Limits:
    """One subscription's limits as a courier applies them: its own cap and bucket, and the shared ones."""

    spec: SubSpec
    semaphore: asyncio.Semaphore  # this courier's cap (a dispatcher's share): what it may ask the shared slots for
    bucket: TokenBucket | None
    slots: SharedSlots | None = None
    tokens: SharedTokens | None = None


class Courier:
    """Sends deliveries from one event loop: pooled connections, per-subscription in-flight cap and rate limit.

    With ``settings.limits_url`` (Redis) every send also takes a slot (and a rate token) of what all processes
    share (``delivery_limits``), so live dispatchers, retries and replays together stay within the
    subscription's limits. A live dispatcher still asks for no more than its partitions' share
    (``share_of``): a busy dispatcher keeps the slots it holds, and the share keeps it from starving another.
    The rate is taken whole from the shared bucket (tokens are granted in arrival order).
    """

    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self._sender: WebhookSender | None = None
        self._limits: dict[str, _Limits] = {}
        self._shared: SharedLimiter | None = None
        self._url_checks: dict[str, tuple[float, str | None]] = {}  # url -> (valid until, refusal or None)

    @property
    def sender(self) -> WebhookSender:
        """The pooled HTTP client (created in the running loop)."""
        if self._sender is None:
            self._sender = WebhookSender(timeout_s=self.settings.timeout_s,
                                         max_connections=self.settings.max_in_flight_cap,
                                         allow_private=self.settings.allow_private)
        return self._sender

    def _limit(self, spec: SubSpec) -> _Limits:
        """The subscription's limits: kept while its settings stay the same, else made anew."""
        held = self._limits.get(spec.id)
        if held is not None and held.spec.same_settings(spec):
            held.spec = spec  # the same limits; the identity check in ``send`` now succeeds at once
        else:
            held = _Limits(spec, asyncio.Semaphore(spec.max_in_flight), None)
            if self.settings.limits_url is not None:
                if self._shared is None:
                    self._shared = SharedLimiter(self.settings.limits_url)
                # This courier's share bounds what it asks for (the semaphore); Redis bounds the sum.
                in_flight, rate = spec.whole_limits
                held.slots = SharedSlots(self._shared, spec.id, in_flight)
                if rate:
                    held.tokens = SharedTokens(self._shared, spec.id, rate)
            elif spec.rate_limit_per_s:
                held.bucket = TokenBucket(spec.rate_limit_per_s)
            self._limits[spec.id] = held
        return held

    async def url_refusal(self, spec: SubSpec) -> str | None:
        """Why the subscription's URL must not be contacted now (DNS may have changed since creation), or None.

        The verdict is kept per URL for ``URL_CHECK_TTL_S``: a batch of ten events should not cost a DNS
        lookup. That is within the sender's own DNS cache (10 s), so it widens no window a rebinding has.
        """
        now = time.monotonic()
        cached = self._url_checks.get(spec.url)
        if cached is not None and cached[0] > now:
            return cached[1]
        refusal: str | None = None
        try:
            await check_url_async(spec.url, self.settings.allow_private)
        except UnsafeUrl as exc:
            logger.warning("subscription %s: URL refused at delivery time: %s", spec.id, exc)
            refusal = str(exc)
        if len(self._url_checks) > 10_000:
            self._url_checks.clear()  # bounded: a cache, not a registry
        self._url_checks[spec.url] = (now + URL_CHECK_TTL_S, refusal)
        return refusal

    async def send(self, spec: SubSpec, event_id: str, body: bytes,
                   cancelled: Callable[[], bool] | None = None) -> AttemptResult | None:
        """One signed POST within the subscription's in-flight cap and rate limit; None if cancelled meanwhile."""
        limits = self._limits.get(spec.id)
        if limits is None or limits.spec is not spec:  # a new snapshot: ``_limit`` decides whether they change
            limits = self._limit(spec)
        # One coroutine for slots, rate, signing and the POST: this runs once per delivery on the dispatcher's
        # busiest thread, where each extra awaited frame costs as much as the limits themselves.
        async with limits.semaphore:
            slots = limits.slots
            if slots is not None:
                await slots.acquire()
            try:
                if limits.tokens is not None:
                    await limits.tokens.acquire()
                elif limits.bucket is not None:
                    await limits.bucket.acquire()
                if cancelled is not None and cancelled():  # e.g. a 410 arrived while this one queued
                    return None
                try:
                    headers = webhook_headers(event_id, spec.secrets, body)
                except ValueError as exc:  # no live secret: nothing to sign with
                    return AttemptResult(None, 0.0, None, f"not signed: {exc}", None)
                return await self.sender.send(spec.url, body, headers, timeout_s=spec.timeout_s)
            finally:
                if slots is not None:
                    slots.release()

    def forget(self, keep: set[str]) -> None:
        """Drop the limits of subscriptions no longer served (shared slots go back once idle, on their own)."""
        for sub_id in list(self._limits):
            if sub_id not in keep:
                del self._limits[sub_id]

    async def hand_back(self) -> None:
        """Hand back the shared slots held now (before this courier's loop goes idle between task runs)."""
        for held in list(self._limits.values()):
            if held.slots is not None:
                await held.slots.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections; hand back the shared slots held."""
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None
        if self._shared is not None:
            await self.hand_back()
            await self._shared.aclose()
            self._shared = None


_local = threading.local()


async def _once(settings: DeliverySettings, work: Callable[[Courier], Awaitable[T]]) -> T:
    """``work`` with a courier of its own, closed afterwards (a one-off loop on a helper thread)."""
    courier = Courier(settings)
    try:
        return await work(courier)
    finally:
        await courier.aclose()


def run_sync(settings: DeliverySettings, work: Callable[[Courier], Awaitable[T]]) -> T:
    """Run ``work(courier)`` from synchronous code (tasks) on this thread's long-lived loop and courier.

    The loop and its courier live as long as the thread (a Celery pool thread or process), so keep-alive
    connections survive from one task run to the next. Called from a thread that already runs an event
    loop (a server or test harness driving asyncio in this thread), the work runs on a helper thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-sync") as pool:
            return pool.submit(asyncio.run, _once(settings, work)).result()
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    courier: Courier | None = getattr(_local, "courier", None)
    if runner is None or courier is None or courier.settings != settings:
        if runner is not None and courier is not None:
            runner.run(courier.aclose())
        runner = runner or asyncio.Runner()
        courier = Courier(settings)
        _local.runner, _local.courier = runner, courier
    return runner.run(_then_hand_back(courier, work))


async def _then_hand_back(courier: Courier, work: Callable[[Courier], Awaitable[T]]) -> T:
    """``work``, then the shared slots back: an idle loop would neither renew nor release them."""
    try:
        return await work(courier)
    finally:
        await courier.hand_back()
