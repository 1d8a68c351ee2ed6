"""Subscription consumers: restarts resume without loss, dispatchers share partitions, a SIGKILLed worker."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from config import BASE_DIR
from tests.integration.webhooks.conftest import Bus, dispatcher, event
from tests.support.receiver import Receiver


def _leases(app: Flask, sub_id: str) -> dict[str, set[int]]:
    """Live partition leases of a subscription by owner."""
    from app.extensions import db
    from app.models import ConsumerLease

    with app.app_context():
        rows = db.session.execute(select(ConsumerLease.owner, ConsumerLease.partition)
                                  .where(ConsumerLease.subscription_id == sub_id,
                                         ConsumerLease.partition >= 0)).all()
    out: dict[str, set[int]] = collections.defaultdict(set)
    for owner, partition in rows:
        out[owner].add(partition)
    return dict(out)


def _ids(receiver: Receiver, path: str) -> list[str]:
    return [r.webhook_id for r in receiver.requests(path)]


@pytest.mark.parametrize("app", ["postgresql", "sqlite"], indirect=True)
def test_a_restarted_dispatcher_resumes_where_it_stopped(bus: Bus, receiver: Receiver) -> None:
    stream = bus.stream(partitions=2)
    sub = bus.subscribe(stream, receiver.url("/again"))
    first = [event(key=f"k{i}") for i in range(40)]
    bus.publish(stream, first)
    with dispatcher(bus.app, owner="first") as d:
        receiver.wait_for(40, "/again")
    assert _leases(bus.app, sub["id"]) == {}  # a clean stop hands its partitions back at once
    assert d.owner == "first"
    later = [event(key=f"k{i}") for i in range(40)]
    bus.publish(stream, later)  # published while no consumer runs
    with dispatcher(bus.app, owner="second"):
        receiver.wait_for(80, "/again")
        time.sleep(0.5)  # anything delivered twice would show up by now
    ids = _ids(receiver, "/again")
    assert sorted(ids) == sorted(e["id"] for e in first + later)  # each once: nothing lost, nothing repeated


def test_two_dispatchers_share_partitions_without_double_delivery(bus: Bus, receiver: Receiver) -> None:
    stream = bus.stream(partitions=4)
    sub = bus.subscribe(stream, receiver.url("/share"), max_in_flight=20)
    sent = [event(key=f"k{i}") for i in range(300)]
    # Leases of 10 s, not the module's 3: what is tested is the hand-over between two live dispatchers, and a
    # loaded machine stalling one past a short lease would make it an expiry (where a duplicate is allowed).
    ttl = {"lease_ttl_s": 10.0}
    with dispatcher(bus.app, owner="d1", **ttl):
        bus.wait(lambda: _leases(bus.app, sub["id"]).get("d1") == {0, 1, 2, 3}, what="d1 holding every partition")
        bus.publish(stream, sent[:150])
        # A second dispatcher joins while the first is consuming: partitions move over between batches.
        with dispatcher(bus.app, owner="d2", **ttl):
            bus.publish(stream, sent[150:])
            split = bus.wait(lambda: (leases := _leases(bus.app, sub["id"])) and len(leases.get("d1", ())) == 2
                             and len(leases.get("d2", ())) == 2 and leases, what="two partitions each")
            receiver.wait_for(300, "/share")
            time.sleep(0.5)
    assert split["d1"].isdisjoint(split["d2"])
    ids = _ids(receiver, "/share")
    assert len(ids) == 300 and set(ids) == {e["id"] for e in sent}


def _worker(pg_url: str, log: Path, name: str) -> subprocess.Popen[bytes]:
    """`celery -A workers.celery_app worker -B`: the dispatcher runs as its bootstep, beat drives retries."""
    env = {**os.environ, "APP_ENV": "testing", "DATABASE_URL": pg_url, "EVENT_LOG_URL": "sql",
           "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15", "WEBHOOK_LEASE_TTL_S": "3", "WEBHOOK_REFRESH_S": "0.5",
           "WEBHOOK_FETCH_WAIT_S": "0.2", "WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_RETRY_TICK_S": "0.5",
           "INSTANCE_DIR": str(log.parent)}
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool", "threads",
         "--concurrency", "2", "--loglevel", "WARNING", "--hostname", f"{name}@%h", "--without-mingle",
         "--without-gossip", "--without-heartbeat", "-B", "--schedule", str(log.parent / "beat-schedule")],
        cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_sigkilled_worker_loses_nothing(pg_app: Flask, receiver: Receiver, tmp_path: Path,
                                        record_property: pytest.RecordProperty) -> None:
    from tests.support.apps import ADMIN_PASSWORD, login, new_tenant

    client = pg_app.test_client()
    bus = Bus(pg_app, client, new_tenant(client, login(client, "admin", ADMIN_PASSWORD)))
    stream = bus.stream(partitions=4)
    bus.subscribe(stream, receiver.url("/kill"), max_in_flight=10)
    sent = [event(key=f"k{i % 97}", n=i) for i in range(10_000)]
    bus.publish(stream, sent)
    log = tmp_path / "worker.log"
    worker = _worker(pg_app.config["TEST_DATABASE_URL"], log, "victim")
    try:
        receiver.wait_for(2_500, "/kill", timeout=90)
        # Mid-run, the worker and its beat: a batch in flight, nothing flushed, leases left behind.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        at_kill = len(receiver.requests("/kill"))
        worker = _worker(pg_app.config["TEST_DATABASE_URL"], log, "survivor")
        missing = receiver.wait_ids({e["id"] for e in sent}, "/kill", timeout=120)
        assert not missing, f"{len(missing)} events never delivered; worker log:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)  # warm shutdown: the dispatcher records, commits, releases
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        bus.cleanup()
    ids = _ids(receiver, "/kill")
    counts = collections.Counter(ids)
    duplicates = len(ids) - len(counts)
    record_property("duplicates", duplicates)
    print(f"\nSIGKILL after {at_kill} of 10000 requests: {len(counts)} distinct events delivered, "  # noqa: T201
          f"{duplicates} delivered twice ({sum(1 for c in counts.values() if c > 1)} events)")
    assert len(counts) == 10_000


def test_dispatchers_sharing_a_subscription_split_its_limits(bus: Bus, receiver: Receiver) -> None:
    # max_in_flight and rate_limit_per_s are the subscription's: two dispatchers holding two of four partitions
    # each get half of each, so that together they never send more than the subscription allows.
    from tests.support.receiver import Reply

    receiver.script("/split", Reply(200, delay_s=0.3))
    stream = bus.stream(partitions=4)
    sub = bus.subscribe(stream, receiver.url("/split"), max_in_flight=6, rate_limit_per_s=1000)
    with dispatcher(bus.app, owner="d1") as d1, dispatcher(bus.app, owner="d2") as d2:
        bus.wait(lambda: [len(p) for p in _leases(bus.app, sub["id"]).values()] == [2, 2], what="two partitions each")
        bus.wait(lambda: all(sub["id"] in d.runners and d.runners[sub["id"]].spec.max_in_flight == 3
                             for d in (d1, d2)), what="each runner at its share")
        assert [d.runners[sub["id"]].spec.rate_limit_per_s for d in (d1, d2)] == [500.0, 500.0]
        sent = [event(key=f"k{i}", n=i) for i in range(60)]  # every partition gets a backlog of slow requests
        bus.publish(stream, sent)
        assert not receiver.wait_ids({e["id"] for e in sent}, "/split", timeout=60)
    assert receiver.max_in_flight <= 6  # without the split: up to 12 (6 from each dispatcher)
    assert receiver.max_in_flight >= 4  # both dispatchers did send concurrently
