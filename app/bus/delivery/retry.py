"""Retry policy for webhook deliveries: outcome classification, Retry-After and the jittered schedule."""
from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Literal

logger = logging.getLogger(__name__)

DEFAULT_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2
MAX_SCHEDULE_LENGTH = 20
MAX_DELAY_S = 7 * 24 * 3600
# Statuses whose Retry-After header we honour (RFC 9110: 503; RFC 6585: 429).
RETRY_AFTER_STATUSES = frozenset({429, 503})

OutcomeKind = Literal["success", "retry", "disable"]
_rng = random.Random()  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True)
class Outcome:
    """What to do after an attempt: success, retry (after ``retry_after_s``) or disable the subscription."""

    kind: OutcomeKind
    retry_after_s: float | None


def classify(status_code: int | None) -> OutcomeKind:
    """2xx is success, 410 Gone disables the subscription, anything else (None = no response) is retried."""
    if status_code is None:
        return "retry"
    if 200 <= status_code <= 299:
        return "success"
    if status_code == 410:
        return "disable"
    return "retry"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date, ``now`` = epoch s); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        # "-0000" parses naive; HTTP dates are always GMT.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def next_delay(
    schedule: Sequence[float],
    attempts_made: int,
    status_code: int | None,
    retry_after_s: float | None,
    max_retry_after_s: float,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds before the next attempt after ``attempts_made`` failures (1-based), or None: dead letter."""
    if attempts_made < 1:
        raise ValueError("attempts_made counts failed attempts and starts at 1")
    # Exhaustion wins over Retry-After: a receiver cannot extend the number of attempts.
    if attempts_made > len(schedule):
        return None
    if status_code in RETRY_AFTER_STATUSES and retry_after_s is not None:
        # The receiver said when; jitter would only make us early or late. Clamp so that a hostile
        # or buggy header can neither hammer (0) nor park the delivery for a year.
        return float(min(max(retry_after_s, 1.0), max(max_retry_after_s, 1.0)))
    base = float(schedule[attempts_made - 1])
    return base * (rng or _rng).uniform(1.0 - JITTER, 1.0 + JITTER)


def validate_schedule(value: object) -> list[float]:
    """A retry schedule as floats: 1..20 positive delays of at most 7 days; None gives the default."""
    if value is None:
        return [float(v) for v in DEFAULT_SCHEDULE]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError("retry_schedule must be a list of delays in seconds")
    if not 1 <= len(value) <= MAX_SCHEDULE_LENGTH:
        raise ValueError(f"retry_schedule must hold 1 to {MAX_SCHEDULE_LENGTH} delays, got {len(value)}")
    out: list[float] = []
    for i, item in enumerate(value):
        # bool is an int subclass; true/false in JSON is a mistake, not a delay.
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError(f"retry_schedule[{i}] must be a number of seconds, got {type(item).__name__}")
        delay = float(item)
        if not math.isfinite(delay) or delay <= 0:
            raise ValueError(f"retry_schedule[{i}] must be a positive number of seconds, got {item!r}")
        if delay > MAX_DELAY_S:
            raise ValueError(f"retry_schedule[{i}] must be at most {MAX_DELAY_S} seconds (7 days), got {item!r}")
        out.append(delay)
    return out
