"""max_in_flight and rate_limit_per_s held across processes in real Redis: couriers, dispatchers, replays."""
from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from flask import Flask

from app.bus.delivery import compile_filter, generate_secret
from app.services import delivery_limits
from app.services.dispatch_config import settings
from app.services.dispatch_send import Courier, SubSpec
from tests.integration.webhooks.conftest import FAST, Bus, bus_on, dispatcher, event
from tests.support.fixtures import app_on
from tests.support.receiver import Receiver, Reply, ok

REDIS_URL = "redis://127.0.0.1:6379/15"


def _spec(url: str, **limits: Any) -> SubSpec:
    """A subscription as the courier sees it (no database needed)."""
    return SubSpec(id=f"sub-{uuid.uuid4().hex[:10]}", tenant_id=1, stream="t.s", partitions=1, group="g", url=url,
                   ordered=False, max_in_flight=limits.get("max_in_flight", 10),
                   rate_limit_per_s=limits.get("rate_limit_per_s"), schedule=(1.0,), timeout_s=5.0,
                   event_types=None, filter_expr=None, secrets=(generate_secret(),), type_ok=lambda _t: True,
                   event_filter=compile_filter(None))


def _courier(limits_url: str | None = REDIS_URL) -> Courier:
    base = settings({"WEBHOOK_ALLOW_PRIVATE": True})
    return Courier(replace(base, limits_url=limits_url))


def _send_from_threads(spec: SubSpec, per_courier: int, couriers: int = 2,
                       limits_url: str | None = REDIS_URL) -> list[int]:
    """``couriers`` couriers, each on its own thread and event loop (as separate processes would be), each
    sending ``per_courier`` events at once; the HTTP statuses."""
    statuses: list[int] = []
    lock = threading.Lock()

    async def run() -> None:
        courier = _courier(limits_url)
        try:
            results = await asyncio.gather(*(courier.send(spec, str(uuid.uuid4()), b"{}")
                                             for _ in range(per_courier)))
        finally:
            await courier.aclose()
        with lock:
            statuses.extend(r.status_code for r in results if r is not None)

    threads = [threading.Thread(target=asyncio.run, args=(run(),)) for _ in range(couriers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


def test_couriers_in_two_loops_share_one_in_flight_cap(receiver: Receiver) -> None:
    receiver.script("/cap", Reply(200, delay_s=0.2))
    spec = _spec(receiver.url("/cap"), max_in_flight=3)
    statuses = _send_from_threads(spec, per_courier=9)
    assert statuses == [200] * 18
    assert receiver.max_in_flight <= 3  # each courier alone allows 3: without the shared slots, up to 6
    assert receiver.max_in_flight >= 2


def test_without_shared_limits_each_courier_applies_the_cap_alone(receiver: Receiver) -> None:
    # The contrast that shows the test above measures something: the same run with local limits only.
    receiver.script("/alone", Reply(200, delay_s=0.2))
    spec = _spec(receiver.url("/alone"), max_in_flight=3)
    assert _send_from_threads(spec, per_courier=9, limits_url=None) == [200] * 18
    assert receiver.max_in_flight >= 4


def test_couriers_in_two_loops_share_one_rate(receiver: Receiver) -> None:
    receiver.script("/rate", ok())
    spec = _spec(receiver.url("/rate"), rate_limit_per_s=4, max_in_flight=50)
    started = time.monotonic()
    assert _send_from_threads(spec, per_courier=6) == [200] * 12
    elapsed = time.monotonic() - started
    # One bucket of 4/s with a burst of 4: 12 sends need at least (12 - 4) / 4 = 2 s. Two separate buckets
    # would let each courier send its 6 in 0.5 s. (A lower bound on time: a slow machine only adds to it.)
    assert elapsed >= 1.8, elapsed


def test_slots_go_back_when_the_sends_are_done(receiver: Receiver) -> None:
    receiver.script("/back", ok())
    spec = _spec(receiver.url("/back"), max_in_flight=5)
    store = redis.Redis.from_url(REDIS_URL)

    async def run() -> tuple[int, int]:
        courier = _courier()
        try:
            await asyncio.gather(*(courier.send(spec, str(uuid.uuid4()), b"{}") for _ in range(10)))
            during = store.zcard(f"{delivery_limits.KEY_PREFIX}{spec.id}:slots")
            await asyncio.sleep(delivery_limits.IDLE_RELEASE_S * 4)  # idle: handed back without closing
            return during, store.zcard(f"{delivery_limits.KEY_PREFIX}{spec.id}:slots")
        finally:
            await courier.aclose()

    during, after = asyncio.run(run())
    assert 1 <= during <= 5  # leased in Redis while sending (the last ones may still be held)
    assert after == 0


def test_a_dead_holders_slots_come_back_when_their_lease_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery_limits, "SLOT_TTL_S", 0.5)
    sub_id = f"sub-{uuid.uuid4().hex[:10]}"

    async def run() -> tuple[int, int, int]:
        limiter = delivery_limits.SharedLimiter(REDIS_URL)
        try:
            taken = await limiter.lease(sub_id, 2, ["dead:1", "dead:2", "dead:3"])  # never released: it "died"
            meanwhile = await limiter.lease(sub_id, 2, ["live:1"])
            await asyncio.sleep(0.7)
            later = await limiter.lease(sub_id, 2, ["live:2", "live:3"])
            return taken, meanwhile, later
        finally:
            await limiter.aclose()

    assert asyncio.run(run()) == (2, 0, 2)


def test_a_redis_outage_falls_back_to_the_local_limits(receiver: Receiver) -> None:
    # Nothing listens on port 1: every shared call fails. Deliveries go on, within this courier's own cap.
    receiver.script("/down", Reply(200, delay_s=0.1))
    spec = _spec(receiver.url("/down"), max_in_flight=2, rate_limit_per_s=1000)
    assert _send_from_threads(spec, per_courier=6, couriers=1, limits_url="redis://127.0.0.1:1/0") == [200] * 6
    assert receiver.max_in_flight <= 2


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app with Redis: its dispatchers, retry task and replay jobs share each subscription's limits."""
    yield from app_on("postgresql", tmp_path_factory, **{**FAST, "REDIS_URL": REDIS_URL,
                                                         "LIVE_WAKE_CHANNEL": "tests:shared-limits-wake"})


@pytest.fixture
def shared_bus(shared_app: Flask) -> Iterator[Bus]:
    """A tenant on the app with shared limits."""
    yield from bus_on(shared_app)


def test_a_replay_and_the_live_dispatcher_share_the_cap(shared_bus: Bus, receiver: Receiver) -> None:
    from app.services.replay_runner import run_job
    from tests.support.webhooks import recording_celery

    receiver.script("/mixed", Reply(200, delay_s=0.2))
    stream = shared_bus.stream(partitions=2)
    sub = shared_bus.subscribe(stream, receiver.url("/mixed"), max_in_flight=4)
    first = [event(key=f"a{i}") for i in range(30)]
    shared_bus.publish(stream, first)
    with dispatcher(shared_bus.app):
        assert not receiver.wait_ids({e["id"] for e in first}, "/mixed", timeout=60)
        receiver.max_in_flight = 0
        with recording_celery(shared_bus.app):
            job_id = shared_bus.api("POST", f"/subscriptions/{sub['id']}/recover",
                                    {"since": "2000-01-01T00:00:00Z"}, 202)["job_id"]
        later = [event(key=f"b{i}") for i in range(30)]
        shared_bus.publish(stream, later)  # the live dispatcher sends these while the replay sends the first 30
        with shared_bus.app.app_context():
            run_job(job_id)
        assert not receiver.wait_ids({e["id"] for e in later}, "/mixed", timeout=60)
    job = shared_bus.api("GET", f"/replay-jobs/{job_id}", status=200)
    assert job["status"] == "succeeded" and job["progress"]["succeeded"] >= 30
    assert receiver.max_in_flight <= 4  # live and replay each allow 4 on their own
    assert receiver.max_in_flight >= 3


def test_retries_and_the_live_dispatcher_share_the_cap(shared_bus: Bus, receiver: Receiver) -> None:
    from app.services.retries import retry_due
    from tests.support.receiver import fail

    slow = Reply(200, delay_s=0.2)
    receiver.script("/again", *([fail()] * 20), slow)  # the first 20 requests fail, every later one is slow
    stream = shared_bus.stream(partitions=2)
    sub = shared_bus.subscribe(stream, receiver.url("/again"), max_in_flight=3, retry_schedule=[0.5, 60])
    first = [event(key=f"a{i}") for i in range(20)]
    shared_bus.publish(stream, first)
    with dispatcher(shared_bus.app):
        shared_bus.wait(lambda: len(shared_bus.deliveries(sub["id"], "retrying")) == 20, what="20 retrying")
        time.sleep(0.6)  # due now
        receiver.max_in_flight = 0
        later = [event(key=f"b{i}") for i in range(20)]
        shared_bus.publish(stream, later)  # the live dispatcher sends these while retry_due sends the first 20
        with shared_bus.app.app_context():
            retry_due(budget_s=30.0)
        assert not receiver.wait_ids({e["id"] for e in later}, "/again", timeout=60)
    assert len(shared_bus.deliveries(sub["id"], "succeeded")) == 40
    assert receiver.max_in_flight <= 3  # the retry run and the live dispatcher each allow 3 on their own
    assert receiver.max_in_flight >= 2
