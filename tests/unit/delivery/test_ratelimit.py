"""Token bucket with a fake clock (no timing assertions)."""
from __future__ import annotations

import asyncio

import pytest

from app.bus.delivery.ratelimit import TokenBucket


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token at 2/s
    assert bucket.try_acquire() and not bucket.try_acquire()
    clock.now += 100  # never more than the burst
    assert sum(bucket.try_acquire() for _ in range(10)) == 3


def test_default_burst() -> None:
    assert TokenBucket(0.5).burst == 1.0
    assert TokenBucket(10).burst == 10.0


@pytest.mark.parametrize(("rate", "burst"), [(0, None), (-1, None), (1, 0.5)])
def test_invalid(rate: float, burst: float | None) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


@pytest.mark.timeout(20)
def test_acquire_waits_for_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        # Advance the fake clock by exactly what acquire asked for.
        sleeps.append(delay)
        clock.now += delay
        await real_sleep(0)

    async def run() -> None:
        bucket = TokenBucket(3.0, burst=1, clock=clock)
        await bucket.acquire()  # the burst: no wait
        monkeypatch.setattr(asyncio, "sleep", fake_sleep)
        await asyncio.gather(bucket.acquire(), bucket.acquire())
        assert not bucket.try_acquire()

    asyncio.run(run())
    assert len(sleeps) == 2
    assert all(d == pytest.approx(1 / 3) for d in sleeps)


@pytest.mark.timeout(20)
def test_acquire_really_sleeps() -> None:
    async def run() -> None:
        bucket = TokenBucket(200.0, burst=1)
        for _ in range(5):
            await bucket.acquire()

    asyncio.run(run())
