"""Webhook delivery engine: Standard Webhooks signing, retry policy, SSRF guard, filters, sender, ordering."""
from __future__ import annotations

from app.bus.delivery.filters import (
    EventFilter,
    FilterError,
    compile_filter,
    type_matcher,
    validate_event_types,
)
from app.bus.delivery.ordering import plan_lanes, split_after_failure
from app.bus.delivery.ratelimit import TokenBucket
from app.bus.delivery.retry import (
    DEFAULT_SCHEDULE,
    Outcome,
    classify,
    next_delay,
    parse_retry_after,
    validate_schedule,
)
from app.bus.delivery.sender import AttemptResult, WebhookSender
from app.bus.delivery.signing import generate_secret, secret_bytes, sign, webhook_headers
from app.bus.delivery.ssrf import UnsafeUrl, check_url, check_url_async

__all__ = [
    "DEFAULT_SCHEDULE",
    "AttemptResult",
    "EventFilter",
    "FilterError",
    "Outcome",
    "TokenBucket",
    "UnsafeUrl",
    "WebhookSender",
    "check_url",
    "check_url_async",
    "classify",
    "compile_filter",
    "generate_secret",
    "next_delay",
    "parse_retry_after",
    "plan_lanes",
    "secret_bytes",
    "sign",
    "split_after_failure",
    "type_matcher",
    "validate_event_types",
    "validate_schedule",
    "webhook_headers",
]
