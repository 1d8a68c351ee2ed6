"""Publish -> delivered: CloudEvents body, Standard Webhooks signature, filters, retries, dead letters, 410, 429."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from tests.integration.webhooks.conftest import Bus, dispatcher, event, retry_beat
from tests.support.receiver import Receiver, Reply, fail, gone, hang, ok, too_many


@pytest.mark.parametrize("app", ["postgresql", "sqlite"], indirect=True)
def test_published_events_are_delivered_signed(bus: Bus, receiver: Receiver) -> None:
    stream = bus.stream()
    sub = bus.subscribe(stream, receiver.url("/e2e"))
    sent = [event(key=f"k{i}", amount=i) for i in range(6)]
    bus.publish(stream, sent)
    with dispatcher(bus.app):
        got = receiver.wait_for(6, "/e2e")
    hook = Webhook(sub["secret"])
    by_id = {r.webhook_id: r for r in got}
    assert set(by_id) == {e["id"] for e in sent}
    for published in sent:
        req = by_id[published["id"]]
        body = hook.verify(req.body, req.headers)  # raises on a bad signature or timestamp
        assert req.headers["content-type"] == "application/cloudevents+json"
        assert body["specversion"] == "1.0" and body["id"] == published["id"] and body["type"] == "order.created"
        assert body["data"] == published["data"] and body["key"] == published["key"]
        assert "partition" not in body and "offset" not in body
    rows = bus.wait(lambda: [d for d in bus.deliveries(sub["id"]) if d["status"] == "succeeded"], what="rows")
    assert len(rows) == 6
    assert all(len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 200 for d in rows)
    assert bus.api("GET", f"/subscriptions/{sub['id']}", status=200)["last_success_at"] is not None


def test_filters_skip_events_but_move_the_offset(bus: Bus, receiver: Receiver) -> None:
    stream = bus.stream(partitions=1)
    sub = bus.subscribe(stream, receiver.url("/f"), event_types=["order.*"], filter="data.amount > 100")
    wanted = event("order.created", amount=150)
    bus.publish(stream, [event("order.created", amount=5), event("user.created", amount=500), wanted,
                         event("order.paid", amount=101)])
    with dispatcher(bus.app):
        receiver.wait_for(2, "/f")
        lag = bus.wait(lambda: _lag_zero(bus, stream, sub["id"]), what="offsets committed past skipped events")
    assert lag
    ids = {r.webhook_id for r in receiver.requests("/f")}
    assert wanted["id"] in ids and len(ids) == 2
    assert len(bus.deliveries(sub["id"])) == 2  # skipped events leave no rows


def _lag_zero(bus: Bus, stream: str, sub_id: str) -> bool:
    from app.extensions import db
    from app.models import Subscription
    from app.services.event_log import event_log

    with bus.app.app_context():
        group = db.session.get(Subscription, sub_id).consumer_group
        lags = event_log().lag(group, f"{bus.tenant.slug}.{stream}")
    return all(p.lag == 0 and p.committed is not None for p in lags)


@pytest.mark.parametrize("app", ["postgresql", "sqlite"], indirect=True)
def test_failures_are_retried_until_success(bus: Bus, receiver: Receiver) -> None:
    receiver.script("/r", fail(), hang(2.5), ok())  # a 500, then a timeout (timeout_s=1), then 200
    stream = bus.stream()
    sub = bus.subscribe(stream, receiver.url("/r"), retry_schedule=[0.2, 0.2, 0.2], timeout_s=1)
    one = event()
    bus.publish(stream, [one])
    with dispatcher(bus.app), retry_beat(bus.app):
        got = receiver.wait_for(3, "/r")
        row = bus.wait(lambda: _one(bus.deliveries(sub["id"], "succeeded")), what="success")
    assert {r.webhook_id for r in got} == {one["id"]}  # the same webhook-id on every attempt
    attempts = row["attempts"]
    assert [a["status_code"] for a in attempts] == [500, None, 200]
    assert attempts[0]["response_excerpt"] == "boom"
    assert "timeout" in attempts[1]["error"]
    assert row["attempt_count"] == 3


def _one(rows: list[dict]) -> dict | None:
    return rows[0] if len(rows) == 1 else None


def test_exhausted_retries_become_dead_letters(bus: Bus, receiver: Receiver) -> None:
    receiver.script("/dead", fail(503))
    stream = bus.stream()
    sub = bus.subscribe(stream, receiver.url("/dead"), retry_schedule=[0.2, 0.2])
    one = event()
    bus.publish(stream, [one])
    with dispatcher(bus.app), retry_beat(bus.app):
        row = bus.wait(lambda: _one(bus.deliveries(sub["id"], "dead")), what="dead letter")
    assert row["attempt_count"] == 3 and [a["status_code"] for a in row["attempts"]] == [503, 503, 503]
    letters = bus.api("GET", f"/dead-letters?subscription={sub['id']}", status=200)["items"]
    assert [d["event_id"] for d in letters] == [one["id"]]
    assert bus.api("GET", f"/subscriptions/{sub['id']}", status=200)["failing_since"] is not None


def test_410_disables_the_subscription_and_discards_pending(bus: Bus, receiver: Receiver) -> None:
    receiver.script("/gone", fail(), gone())
    stream = bus.stream(partitions=1)
    sub = bus.subscribe(stream, receiver.url("/gone"), retry_schedule=[0.3], max_in_flight=1)
    bus.publish(stream, [event(), event(), event()])
    with dispatcher(bus.app), retry_beat(bus.app):
        bus.wait(lambda: bus.api("GET", f"/subscriptions/{sub['id']}")["status"] == "disabled", what="disabled")
    shown = bus.api("GET", f"/subscriptions/{sub['id']}", status=200)
    assert "410" in shown["disabled_reason"]
    rows = bus.deliveries(sub["id"])
    assert not [d for d in rows if d["status"] in ("retrying", "waiting")]
    assert any(d["status"] == "discarded" for d in rows)
    audit = _audit(bus, sub["id"])
    assert "subscription.disable" in audit


def _audit(bus: Bus, target: str) -> list[str]:
    from sqlalchemy import select

    from app.extensions import db
    from app.models import AuditRecord

    with bus.app.app_context():
        return list(db.session.execute(select(AuditRecord.action).where(AuditRecord.target == target)).scalars())


def test_429_retry_after_is_honoured(bus: Bus, receiver: Receiver) -> None:
    receiver.script("/slow", too_many("1"), ok())
    stream = bus.stream()
    # The schedule alone would wait an hour: only Retry-After makes the retry come after a second.
    sub = bus.subscribe(stream, receiver.url("/slow"), retry_schedule=[3600])
    bus.publish(stream, [event()])
    with dispatcher(bus.app):
        pending = bus.wait(lambda: _one(bus.deliveries(sub["id"], "retrying")), what="a retry")
        first_at = datetime.fromisoformat(pending["attempts"][0]["at"].replace("Z", "+00:00"))
        due = datetime.fromisoformat(pending["next_attempt_at"].replace("Z", "+00:00"))
        assert 0.5 <= (due - first_at).total_seconds() <= 30  # 1 s (+ the attempt), not the schedule's hour
        with retry_beat(bus.app):
            row = bus.wait(lambda: _one(bus.deliveries(sub["id"], "succeeded")), what="success")
    assert [a["status_code"] for a in row["attempts"]] == [429, 200]


def test_ssrf_guard_is_checked_again_at_delivery_time(bus: Bus, receiver: Receiver) -> None:
    stream = bus.stream()
    sub = bus.subscribe(stream, receiver.url("/ssrf"))  # accepted: private targets allowed at creation
    bus.publish(stream, [event()])
    bus.app.config["WEBHOOK_ALLOW_PRIVATE"] = False  # ... and no longer when it is delivered
    try:
        with dispatcher(bus.app):
            row = bus.wait(lambda: _one(bus.deliveries(sub["id"], "retrying")), what="a refused attempt")
    finally:
        bus.app.config["WEBHOOK_ALLOW_PRIVATE"] = True
    assert receiver.requests("/ssrf") == []
    assert "refused" in row["attempts"][0]["error"] and "loopback" in row["attempts"][0]["error"]


def test_max_in_flight_and_rate_limit_bound_the_sending(bus: Bus, receiver: Receiver) -> None:
    receiver.script("/cap", Reply(200, delay_s=0.2))
    stream = bus.stream(partitions=1)
    bus.subscribe(stream, receiver.url("/cap"), max_in_flight=2)
    bus.publish(stream, [event() for _ in range(8)])
    with dispatcher(bus.app):
        receiver.wait_for(8, "/cap")
    assert 1 <= receiver.max_in_flight <= 2

    stream = bus.stream(partitions=1)
    bus.subscribe(stream, receiver.url("/rate"), rate_limit_per_s=5, max_in_flight=50)
    bus.publish(stream, [event() for _ in range(10)])
    with dispatcher(bus.app):
        got = receiver.wait_for(10, "/rate")
    # A burst of 5, then one every 0.2 s: the tenth cannot come sooner than ~1 s after the first.
    assert got[-1].at - got[0].at >= 0.8


def test_subscriptions_failing_too_long_are_disabled(bus: Bus, receiver: Receiver) -> None:
    from sqlalchemy import update

    from app.extensions import db
    from app.models import Subscription
    from app.services.retries import disable_failing

    stream = bus.stream()
    failing = bus.subscribe(stream, receiver.url("/x"))
    healthy = bus.subscribe(stream, receiver.url("/y"))
    long_ago = datetime.now(UTC) - timedelta(days=6)
    with bus.app.app_context():
        db.session.execute(update(Subscription).where(Subscription.id == failing["id"])
                           .values(failing_since=long_ago, last_success_at=long_ago - timedelta(days=1)))
        db.session.execute(update(Subscription).where(Subscription.id == healthy["id"])
                           .values(failing_since=datetime.now(UTC) - timedelta(days=1)))
        db.session.commit()
        assert disable_failing() >= 1
        assert disable_failing() == 0  # safe to run twice
    assert bus.api("GET", f"/subscriptions/{failing['id']}")["status"] == "disabled"
    assert bus.api("GET", f"/subscriptions/{healthy['id']}")["status"] == "active"
    assert "subscription.disable" in _audit(bus, failing["id"])
