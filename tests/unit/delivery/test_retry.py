"""Retry policy: classification, Retry-After parsing and the jittered schedule."""
from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from app.bus.delivery.retry import (
    DEFAULT_SCHEDULE,
    Outcome,
    classify,
    next_delay,
    parse_retry_after,
    validate_schedule,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "success"),
        (201, "success"),
        (204, "success"),
        (299, "success"),
        (None, "retry"),
        (100, "retry"),
        (301, "retry"),
        (302, "retry"),
        (400, "retry"),
        (401, "retry"),
        (404, "retry"),
        (409, "retry"),
        (410, "disable"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_classify(status: int | None, kind: str) -> None:
    assert classify(status) == kind


def test_outcome_is_frozen() -> None:
    outcome = Outcome("retry", 5.0)
    with pytest.raises(AttributeError):
        outcome.kind = "success"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("１２", None),  # full-width digits are not delta-seconds
        ("Wed, 32 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after_values(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_http_date() -> None:
    when = datetime.fromtimestamp(NOW + 90, tz=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == pytest.approx(90.0)
    # A date in the past means "now", never a negative delay.
    past = datetime.fromtimestamp(NOW - 90, tz=UTC)
    assert parse_retry_after(format_datetime(past, usegmt=True), NOW) == 0.0
    # "-0000" parses to a naive datetime; it is still GMT.
    naive = format_datetime(when.replace(tzinfo=None))
    assert parse_retry_after(naive, NOW) == pytest.approx(90.0)


def test_next_delay_follows_schedule_with_bounded_jitter() -> None:
    rng = random.Random(42)
    schedule = list(DEFAULT_SCHEDULE)
    for _ in range(200):
        for attempts_made, base in enumerate(schedule, start=1):
            delay = next_delay(schedule, attempts_made, 500, None, 3600, rng)
            assert delay is not None
            assert base * 0.8 <= delay <= base * 1.2


def test_next_delay_jitter_spreads() -> None:
    rng = random.Random(7)
    delays = {next_delay([100], 1, None, None, 3600, rng) for _ in range(50)}
    assert len(delays) > 40  # jitter actually varies
    assert min(delays) < 95 and max(delays) > 105  # type: ignore[operator]


def test_next_delay_is_deterministic_with_seed() -> None:
    a = [next_delay(DEFAULT_SCHEDULE, i, 500, None, 60, random.Random(1)) for i in range(1, 8)]
    b = [next_delay(DEFAULT_SCHEDULE, i, 500, None, 60, random.Random(1)) for i in range(1, 8)]
    assert a == b


def test_next_delay_exhausted_is_dead_letter() -> None:
    assert next_delay([5, 10], 3, 500, None, 60) is None
    # Retry-After cannot extend the number of attempts.
    assert next_delay([5, 10], 3, 429, 30.0, 60) is None
    assert next_delay([5, 10], 2, 500, None, 60) is not None


def test_next_delay_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError):
        next_delay([5], 0, 500, None, 60)


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, 30.0, 30.0),
        (503, 30.0, 30.0),
        (429, 0.0, 1.0),  # clamped up: never hammer
        (429, 0.2, 1.0),
        (503, 10_000.0, 600.0),  # clamped down to max_retry_after_s
        (429, 600.0, 600.0),
    ],
)
def test_next_delay_honours_retry_after(status: int, retry_after: float, expected: float) -> None:
    assert next_delay([5, 300], 1, status, retry_after, 600, random.Random(0)) == expected


@pytest.mark.parametrize("status", [500, 502, 404, None])
def test_retry_after_ignored_for_other_statuses(status: int | None) -> None:
    delay = next_delay([5, 300], 2, status, 30.0, 600, random.Random(0))
    assert delay is not None and 240 <= delay <= 360


def test_429_without_retry_after_uses_schedule() -> None:
    delay = next_delay([5, 300], 1, 429, None, 600, random.Random(0))
    assert delay is not None and 4 <= delay <= 6


def test_validate_schedule_ok() -> None:
    assert validate_schedule([1, 2.5, 604800]) == [1.0, 2.5, 604800.0]
    assert validate_schedule((5,)) == [5.0]
    assert validate_schedule(None) == [float(v) for v in DEFAULT_SCHEDULE]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "1 to 20"),
        ([1] * 21, "1 to 20"),
        ("5,10", "list"),
        ({"a": 1}, "list"),
        (5, "list"),
        ([5, 0], r"retry_schedule\[1\] must be a positive"),
        ([-1], "positive"),
        ([math.inf], "positive"),
        ([math.nan], "positive"),
        ([604801], "7 days"),
        (["5"], "number"),
        ([True], "number"),
        ([None], "number"),
    ],
)
def test_validate_schedule_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_schedule(value)
