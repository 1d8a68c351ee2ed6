"""The dispatcher's fast path: pipelined batches, COPY-recorded rows, wake-ups on publish."""
from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import select
from sqlalchemy.pool import NullPool

from tests.integration.webhooks.conftest import FAST, Bus, dispatcher, event, retry_beat
from tests.support.apps import ADMIN_PASSWORD, login, new_tenant
from tests.support.fixtures import app_on
from tests.support.receiver import Receiver, Reply, fail, ok


@pytest.mark.parametrize("app", ["postgresql", "sqlite"], indirect=True)
def test_delivery_rows_round_trip_through_bulk_insert(app: Flask, bus: Bus) -> None:
    # COPY's text format has its own escaping (tab, newline, backslash, NULL, bytea): the stored row must be
    # exactly what was written, as it is through a plain INSERT on SQLite.
    from app.extensions import db
    from app.models import Delivery, Subscription
    from app.services.dispatch_copy import bulk_insert

    stream = bus.stream(partitions=1)
    sub = bus.subscribe(stream, "http://127.0.0.1:9/nowhere")
    with app.app_context():
        tenant_id = db.session.get(Subscription, sub["id"]).tenant_id
    at = datetime(2026, 11, 27, 6, 30, 1, 123456, tzinfo=UTC)
    awkward = "tab\there\nnew line\r\\N back\\slash \\x00 é ✓"
    rows = [{"id": f"copy-{sub['id'][:8]}-{n}", "tenant_id": tenant_id, "subscription_id": sub["id"],
             "event_id": f"e-{n}", "event_type": "order.created", "event_key": awkward if n else None,
             "partition": 0, "offset": n, "status": "dead" if n else "succeeded", "origin": "live",
             "attempts": n, "next_attempt_at": at if n else None, "last_status_code": 500 if n else 200,
             "last_error": awkward if n else None, "body": b"\x00\\\t\n{\"a\":1}\xff" if n else None,
             "created_at": at, "updated_at": at} for n in range(2)]
    with app.app_context():
        bulk_insert(Delivery.__table__, rows)
        db.session.commit()
        stored = db.session.execute(select(Delivery).where(Delivery.subscription_id == sub["id"])
                                    .order_by(Delivery.offset)).scalars().all()
        got = [{c: getattr(d, c) for c in rows[0]} for d in stored]
        db.session.rollback()
    for row in got:
        for key in ("created_at", "updated_at", "next_attempt_at"):
            if row[key] is not None and row[key].tzinfo is None:
                row[key] = row[key].replace(tzinfo=UTC)  # SQLite hands back naive UTC
    assert got == rows


def test_a_failed_key_holds_batches_read_ahead_while_it_is_recorded(bus: Bus, receiver: Receiver) -> None:
    # max_in_flight 1: 20-event batches, so the 50 events of K span three pipelined batches. The batch after the
    # failing head is read and sent while the head's batch is still being recorded: K must wait there too.
    stream = bus.stream(partitions=1)
    sub = bus.subscribe(stream, receiver.url("/pipe"), ordered=True, max_in_flight=1, retry_schedule=[0.5, 0.5])
    ks = [event(key="K", n=i) for i in range(50)]
    receiver.script("/pipe", fail(503), ok(), webhook_id=ks[0]["id"])
    bus.publish(stream, ks)
    with dispatcher(bus.app):
        bus.wait(lambda: len(bus.deliveries(sub["id"], "waiting")) == 49, what="49 events held behind K's head")
        assert [r.webhook_id for r in receiver.requests("/pipe")] == [ks[0]["id"]]
        with retry_beat(bus.app):
            bus.wait(lambda: len(bus.deliveries(sub["id"], "succeeded")) == 50, what="all delivered")
    assert [r.webhook_id for r in receiver.requests("/pipe")] == [ks[0]["id"]] + [e["id"] for e in ks]


def _every_event_once(bus: Bus, receiver: Receiver, count: int) -> None:
    """``count`` events over 3 partitions in 50-event pipelined batches: each delivered and recorded once."""
    stream = bus.stream(partitions=3)
    sub = bus.subscribe(stream, receiver.url("/many"), max_in_flight=5)  # 50-event batches
    sent = [event(key=f"k{i % 13}", n=i) for i in range(count)]
    with dispatcher(bus.app):
        for start in range(0, len(sent), 100):  # published while the dispatcher reads: batches of every size
            bus.publish(stream, sent[start:start + 100])
        missing = receiver.wait_ids({e["id"] for e in sent}, "/many", timeout=90)
        assert not missing
        bus.wait(lambda: not any(lag["lag"] for lag in _lag(bus, sub["id"])), what="offsets committed")
    counts = collections.Counter(r.webhook_id for r in receiver.requests("/many"))
    assert len(counts) == count and max(counts.values()) == 1
    rows = bus.deliveries(sub["id"], "succeeded")
    assert len(rows) == min(count, 500)  # 500: the page limit
    assert all(len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 200 for d in rows)


def test_pipelined_batches_deliver_every_event_once(bus: Bus, receiver: Receiver) -> None:
    _every_event_once(bus, receiver, 1_000)


def test_a_runner_behind_reads_the_next_batch_while_sending_this_one(bus: Bus, receiver: Receiver,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A backlog of five 20-event batches, each reply 20 ms late: with read-ahead the read of batch N+1 starts
    # before the last request of batch N reaches the receiver (without it, only after batch N's replies).
    from app.services import dispatch

    reads: list[tuple[float, dict[int, int]]] = []
    real_read_from = dispatch.read_from

    def timed_read_from(log: Any, stream: str, positions: dict[int, int], limit: int) -> Any:
        reads.append((time.monotonic(), dict(positions)))
        return real_read_from(log, stream, positions, limit)

    monkeypatch.setattr(dispatch, "read_from", timed_read_from)
    stream = bus.stream(partitions=1)
    sub = bus.subscribe(stream, receiver.url("/behind"), max_in_flight=2)  # 20-event batches
    receiver.script("/behind", Reply(200, delay_s=0.02))
    sent = [event(key=f"k{i % 7}", n=i) for i in range(100)]
    bus.publish(stream, sent)
    with dispatcher(bus.app):
        assert not receiver.wait_ids({e["id"] for e in sent}, "/behind", timeout=60)
        bus.wait(lambda: _committed(bus, sub["id"]) == {0: 100}, what="every offset committed")
    arrived = {r.webhook_id: r.at for r in receiver.requests("/behind")}
    assert len(arrived) == 100 and len(receiver.requests("/behind")) == 100  # each once
    started = {positions[0]: at for at, positions in reads if positions}
    for first in (20, 40, 60, 80):  # the read of each later batch began while the one before was still sent
        assert started[first] < arrived[sent[first - 1]["id"]], f"batch at {first} read only after the one before"
    assert len(bus.deliveries(sub["id"], "succeeded")) == 100


@pytest.fixture(scope="module")
def kafka_app(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app whose event log is the Kafka-protocol broker (metadata on SQLite)."""
    from tests.support.apps import build_app
    from tests.support.fixtures import close_app

    path = tmp_path_factory.mktemp("kafka-dispatch") / "bus.db"
    application = build_app(f"sqlite:///{path}", event_log_url=f"kafka://{kafka_bootstrap}", **FAST)
    yield application
    close_app(application)


def test_pipelined_batches_on_kafka_deliver_every_event_once(kafka_app: Flask, receiver: Receiver) -> None:
    # Kafka reads ahead with one consumer over every partition (drain), and long polls return soon after data.
    client = kafka_app.test_client()
    bus = Bus(kafka_app, client, new_tenant(client, login(client, "admin", ADMIN_PASSWORD)))
    try:
        _every_event_once(bus, receiver, 600)
    finally:
        bus.cleanup()


def _lag(bus: Bus, sub_id: str) -> list[dict[str, int]]:
    """The subscription's consumer-group lag per partition."""
    from app.bus.log.base import PartitionLag
    from app.models import Subscription
    from app.services.event_log import event_log

    with bus.app.app_context():
        from app.extensions import db

        sub = db.session.get(Subscription, sub_id)
        lags: list[PartitionLag] = event_log().lag(sub.consumer_group, sub.stream.log_name)
        return [{"partition": x.partition, "lag": x.lag} for x in lags]


def test_deleting_a_subscription_deletes_its_consumer_group(bus: Bus, receiver: Receiver) -> None:
    # No stale group of a deleted subscription lingers in the log's groups (and the console's lag views): the API
    # deletes it, and the dispatcher that was running the subscription deletes it again after its last commit.
    from app.extensions import db
    from app.models import Subscription
    from app.services.event_log import event_log

    stream = bus.stream(partitions=2)
    sub = bus.subscribe(stream, receiver.url("/deleted"))
    with bus.app.app_context():
        row = db.session.get(Subscription, sub["id"])
        group, log_name = row.consumer_group, row.stream.log_name

    def groups() -> list[str]:
        with bus.app.app_context():
            return [g for g, _ in event_log().groups(log_name)]

    sent = [event(key=f"k{i}", n=i) for i in range(20)]
    with dispatcher(bus.app):
        bus.publish(stream, sent)
        assert not receiver.wait_ids({e["id"] for e in sent}, "/deleted", timeout=30)
        bus.wait(lambda: group in groups(), what="the group's offsets committed")
        bus.api("DELETE", f"/subscriptions/{sub['id']}", status=204)
        assert group not in groups()
        time.sleep(1.5)  # five refreshes: the runner is retired, its leases released
        assert group not in groups()
    assert group not in groups()


@pytest.fixture(scope="module")
def redis_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app with Redis: publishes announce appends; an idle dispatcher polls only every 60 s."""
    yield from app_on("postgresql", tmp_path_factory, **{
        **FAST, "REDIS_URL": "redis://127.0.0.1:6379/15", "WEBHOOK_IDLE_POLL_S": 60.0,
        "LIVE_WAKE_CHANNEL": "tests:dispatch-wake"})


def test_a_publish_wakes_the_idle_dispatcher(redis_app: Flask, receiver: Receiver) -> None:
    client = redis_app.test_client()
    bus = Bus(redis_app, client, new_tenant(client, login(client, "admin", ADMIN_PASSWORD)))
    stream = bus.stream(partitions=2)
    sub = bus.subscribe(stream, receiver.url("/woken"))
    try:
        with dispatcher(redis_app):
            first = [event(key="a"), event(key="b")]
            bus.publish(stream, first)
            assert not receiver.wait_ids({e["id"] for e in first}, "/woken", timeout=20)
            bus.wait(lambda: len(bus.deliveries(sub["id"], "succeeded")) == 2, what="the first two recorded")
            time.sleep(0.5)  # the runner is idle now: its next poll of the log is a minute away
            later = [event(key="c")]
            bus.publish(stream, later)
            # Delivered within wait_ids' patience (20 s) only if the publish woke the runner.
            assert not receiver.wait_ids({e["id"] for e in later}, "/woken", timeout=20)
    finally:
        bus.cleanup()


@contextmanager
def recording_blocked(app: Flask) -> Iterator[Any]:
    """Hold a SHARE lock on ``deliveries`` from another connection: every recording (its COPY) waits behind it."""
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    conn = engine.connect()
    trans = conn.begin()
    conn.execute(sa.text("LOCK TABLE deliveries IN SHARE MODE"))
    try:
        yield conn
    finally:
        trans.rollback()
        conn.close()
        engine.dispose()


def _committed(bus: Bus, sub_id: str) -> dict[int, int]:
    from app.models import Subscription
    from app.services.event_log import event_log

    with bus.app.app_context():
        from app.extensions import db

        sub = db.session.get(Subscription, sub_id)
        return event_log().committed(sub.consumer_group, sub.stream.log_name)


def test_sending_goes_on_while_a_recording_waits_up_to_the_bound(bus: Bus, receiver: Receiver) -> None:
    # Delivery latency must not include the durable commits: while a recording is stuck, the next batches are
    # still read and sent — up to UNRECORDED_BATCHES batches' worth, the bound on what a crash sends twice —
    # and no offset moves past an event before its delivery row is written.
    from app.services.dispatch import UNRECORDED_BATCHES

    stream = bus.stream(partitions=1)
    sub = bus.subscribe(stream, receiver.url("/ahead"), max_in_flight=2)  # 20-event batches
    first = event(key="w")
    burst = [event(key=f"k{i % 5}", n=i) for i in range(200)]
    bound = 20 * UNRECORDED_BATCHES
    with dispatcher(bus.app):
        bus.publish(stream, [first])
        bus.wait(lambda: len(bus.deliveries(sub["id"], "succeeded")) == 1, what="the first event recorded")
        assert _committed(bus, sub["id"]) == {0: 1}
        with recording_blocked(bus.app):
            bus.publish(stream, burst)
            bus.wait(lambda: len(receiver.requests("/ahead")) >= 1 + bound, what="batches sent, none recorded")
            time.sleep(1.0)
            assert len(receiver.requests("/ahead")) == 1 + bound  # and no more: the pipeline waits at the bound
            assert _committed(bus, sub["id"]) == {0: 1}
            assert len(bus.deliveries(sub["id"])) == 1
        assert not receiver.wait_ids({e["id"] for e in burst}, "/ahead", timeout=60)
        bus.wait(lambda: _committed(bus, sub["id"]) == {0: 201}, what="every offset committed")
    counts = collections.Counter(r.webhook_id for r in receiver.requests("/ahead"))
    assert len(counts) == 201 and max(counts.values()) == 1
    assert len(bus.deliveries(sub["id"], "succeeded")) == 201


def test_a_failed_recording_sends_its_batches_again_and_loses_nothing(bus: Bus, receiver: Receiver) -> None:
    # The recording of the first batch dies (its database connection is terminated while it waits for a lock):
    # neither it nor the batches sent after it may be committed; the runner re-reads from the committed offset
    # and sends all of them again. Each event twice, each recorded once, nothing lost.
    stream = bus.stream(partitions=1)
    sub = bus.subscribe(stream, receiver.url("/again"), max_in_flight=2)  # 20-event batches
    burst = [event(key=f"k{i % 5}", n=i) for i in range(60)]  # three batches, under the unrecorded bound
    before = _committed(bus, sub["id"])
    with dispatcher(bus.app):
        with recording_blocked(bus.app) as lock:
            bus.publish(stream, burst)
            bus.wait(lambda: len(receiver.requests("/again")) >= 60, what="all three batches sent")

            def stuck() -> list[int]:
                return list(lock.execute(sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalars())

            pids = bus.wait(stuck, what="the recording waiting for the lock")
            assert len(pids) == 1
            lock.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
            assert _committed(bus, sub["id"]) == before
        bus.wait(lambda: _committed(bus, sub["id"]) == {0: 60}, timeout=30, what="every offset committed")
    counts = collections.Counter(r.webhook_id for r in receiver.requests("/again"))
    assert set(counts) == {e["id"] for e in burst}
    assert set(counts.values()) == {2}  # sent, not recorded, so sent again: exactly once more
    rows = bus.deliveries(sub["id"], "succeeded")
    assert sorted(d["event_id"] for d in rows) == sorted(e["id"] for e in burst)
