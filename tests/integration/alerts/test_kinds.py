"""Every kind of rule fires when its condition comes and resolves when it goes, measured on real state."""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from tests.integration.alerts.conftest import AlertBus
from tests.support.webhooks import HOOK_URL, add_delivery


def _set_status(bus: AlertBus, model: object, row_id: str, status: str) -> None:
    from app.extensions import db

    with bus.app.app_context():
        db.session.execute(update(model).where(model.id == row_id).values(status=status))  # type: ignore[attr-defined]
        db.session.commit()


def test_consumer_lag_of_a_group_fires_and_resolves_when_the_group_catches_up(bus: AlertBus) -> None:
    stream = bus.stream()
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "billing"}, threshold=2)
    bus.publish(stream, 2)
    assert bus.evaluate() == {"ok": 1}  # lag 2 is not above 2
    bus.publish(stream, 1)
    assert bus.evaluate() == {"fired": 1}
    firing = bus.alerts("firing")
    assert [(a["rule"], a["value"]) for a in firing] == [(rule["id"], 3.0)]
    bus.api("POST", f"/streams/{stream}/groups/billing/commit", {"offsets": [{"partition": 0, "offset": 3}]}, 204)
    assert bus.evaluate() == {"resolved": 1}
    assert bus.state(rule["id"]) == "ok"
    assert [a["value"] for a in bus.alerts("resolved")] == [0.0]


def test_consumer_lag_of_a_subscription(bus: AlertBus) -> None:
    stream = bus.stream()
    sub = bus.api("POST", "/subscriptions", {"stream": stream, "url": HOOK_URL}, 201)
    rule = bus.rule("consumer_lag", {"subscription": sub["id"]}, threshold=0)
    assert bus.evaluate() == {"ok": 1}
    bus.publish(stream, 2)  # no dispatcher runs here: the subscription's group falls behind
    assert bus.evaluate() == {"fired": 1}
    assert bus.api("GET", f"/alert-rules/{rule['id']}", status=200)["value"] == 2.0


def test_dead_letters_fire_above_the_threshold_and_resolve_when_replayed_away(bus: AlertBus) -> None:
    from app.models import Delivery

    stream = bus.stream()
    sub = bus.api("POST", "/subscriptions", {"stream": stream, "url": HOOK_URL}, 201)
    by_sub = bus.rule("dead_letters", {"subscription": sub["id"]}, threshold=1)
    by_stream = bus.rule("dead_letters", {"stream": stream}, threshold=1)
    tenant_wide = bus.rule("dead_letters", {}, threshold=1)
    first = add_delivery(bus.app, sub["id"], status="dead")
    assert bus.evaluate() == {"ok": 3}
    second = add_delivery(bus.app, sub["id"], status="dead", offset=1)
    assert bus.evaluate() == {"fired": 3}
    assert {a["rule"] for a in bus.alerts("firing")} == {by_sub["id"], by_stream["id"], tenant_wide["id"]}
    for delivery_id in (first, second):
        _set_status(bus, Delivery, delivery_id, "succeeded")  # what a successful replay leaves
    assert bus.evaluate() == {"resolved": 3}


def test_dead_letter_rate_counts_only_the_window(bus: AlertBus) -> None:
    stream = bus.stream()
    sub = bus.api("POST", "/subscriptions", {"stream": stream, "url": HOOK_URL}, 201)
    rule = bus.rule("dead_letter_rate", {"subscription": sub["id"]}, threshold=0.5, window_s=120)
    for offset in range(3):  # 3 dead letters in 2 minutes: 1.5 a minute
        add_delivery(bus.app, sub["id"], status="dead", offset=offset)
    now = datetime.now(UTC)
    assert bus.evaluate(now) == {"fired": 1}
    assert bus.api("GET", f"/alert-rules/{rule['id']}", status=200)["value"] == 1.5
    # Two minutes later none of them is new: the rate is 0 although they still wait.
    assert bus.evaluate(now + timedelta(seconds=121)) == {"resolved": 1}


def test_failure_rate_over_the_window(bus: AlertBus) -> None:
    stream = bus.stream()
    sub = bus.api("POST", "/subscriptions", {"stream": stream, "url": HOOK_URL}, 201)
    rule = bus.rule("failure_rate", {"subscription": sub["id"]}, threshold=50, window_s=60)
    add_delivery(bus.app, sub["id"], status="retrying", attempts=2)  # both attempts failed (500, then an error)
    now = datetime.now(UTC) + timedelta(seconds=5)
    assert bus.evaluate(now) == {"fired": 1}
    assert bus.api("GET", f"/alert-rules/{rule['id']}", status=200)["value"] == 100.0
    assert bus.evaluate(now + timedelta(seconds=120)) == {"resolved": 1}  # no attempts in the window any more


def test_throughput_above_and_below_read_the_minute_rollups(bus: AlertBus) -> None:
    from app.services.live_metrics import live

    stream = bus.stream()
    above = bus.rule("throughput_above", {"stream": stream}, threshold=0.01, window_s=60)
    below = bus.rule("throughput_below", {"stream": stream}, threshold=0.01, window_s=60)
    if time.time() % 60 > 55:  # keep the publish and its count inside one minute
        time.sleep(60 - time.time() % 60 + 0.1)
    started = time.time()
    bus.publish(stream, 30)
    with bus.app.app_context():
        live(bus.app).flush(everything=True)  # what the flusher thread does after the minute ends
    # The evaluation a minute later sees the minute of the publish as complete and flushed: 30 events / 60 s.
    minute = int(started) - int(started) % 60
    then = datetime.fromtimestamp(minute + 60 + 20, UTC)
    assert bus.evaluate(then) == {"fired": 1, "ok": 1}
    assert bus.state(above["id"]) == "firing" and bus.state(below["id"]) == "ok"
    assert bus.api("GET", f"/alert-rules/{above['id']}", status=200)["value"] == 0.5
    # A quiet minute later: the rate is 0, below the bound.
    assert bus.evaluate(then + timedelta(seconds=60)) == {"fired": 1, "resolved": 1}
    assert bus.state(above["id"]) == "ok" and bus.state(below["id"]) == "firing"


def test_subscription_disabled_fires_until_resumed(bus: AlertBus) -> None:
    from app.models import Subscription

    stream = bus.stream()
    sub = bus.api("POST", "/subscriptions", {"stream": stream, "url": HOOK_URL}, 201)
    one = bus.rule("subscription_disabled", {"subscription": sub["id"]}, threshold=None)
    assert one["threshold"] == 0.0
    anyone = bus.rule("subscription_disabled", {}, threshold=None)
    assert bus.evaluate() == {"ok": 2}
    _set_status(bus, Subscription, sub["id"], "disabled")  # what a 410 or failing too long does
    assert bus.evaluate() == {"fired": 2}
    assert bus.state(anyone["id"]) == "firing"
    bus.api("POST", f"/subscriptions/{sub['id']}/resume", None, 200)
    assert bus.evaluate() == {"resolved": 2}


def test_worker_silent_fires_when_heartbeats_stop(bus: AlertBus) -> None:
    from app.services import alert_heartbeats

    name = f"host-{time.time_ns()}:1"
    t0 = datetime.now(UTC)
    with bus.app.app_context():
        alert_heartbeats.beat("worker", name, now=t0)
    rule = bus.rule("worker_silent", {"process": "worker", "name": name}, threshold=30)
    assert bus.evaluate(t0 + timedelta(seconds=20)) == {"ok": 1}
    assert bus.evaluate(t0 + timedelta(seconds=45)) == {"fired": 1}
    assert bus.api("GET", f"/alert-rules/{rule['id']}", status=200)["value"] == 45.0
    with bus.app.app_context():
        alert_heartbeats.beat("worker", name, now=t0 + timedelta(seconds=50))
    assert bus.evaluate(t0 + timedelta(seconds=55)) == {"resolved": 1}


def test_heartbeat_thread_writes_its_process(bus: AlertBus) -> None:
    from app.services import alert_heartbeats
    from workers.heartbeat import Heartbeat

    before = datetime.now(UTC)
    beat = Heartbeat(bus.app, "beat").start()
    try:
        deadline = time.monotonic() + 10
        while True:
            with bus.app.app_context():
                seen = alert_heartbeats.last_seen("beat", beat.name)
            if seen is not None and seen >= before - timedelta(seconds=1) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        beat.stop()
    assert seen is not None and seen >= before - timedelta(seconds=1)


def test_a_rule_on_a_deleted_stream_resolves(bus: AlertBus) -> None:
    stream = bus.stream()
    bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0)
    bus.publish(stream, 1)
    assert bus.evaluate() == {"fired": 1}
    bus.api("DELETE", f"/streams/{stream}", None, 204)
    assert bus.evaluate() == {"resolved": 1}


def test_disabled_rules_are_not_evaluated(bus: AlertBus) -> None:
    stream = bus.stream()
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0, enabled=False)
    bus.publish(stream, 1)
    assert bus.evaluate() == {}
    bus.api("PATCH", f"/alert-rules/{rule['id']}", {"enabled": True}, 200)
    assert bus.evaluate() == {"fired": 1}


def test_switching_a_rule_off_closes_its_alert(bus: AlertBus) -> None:
    stream = bus.stream()
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0)
    bus.publish(stream, 1)
    assert bus.evaluate() == {"fired": 1}
    bus.api("PATCH", f"/alert-rules/{rule['id']}", {"enabled": False}, 200)
    assert bus.alerts("firing") == [] and len(bus.alerts("resolved")) == 1
    assert bus.state(rule["id"]) == "ok"
