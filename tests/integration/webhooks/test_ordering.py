"""Ordered subscriptions: per key, in partition order; a retrying or dead head holds its key, others flow."""
from __future__ import annotations

import pytest

from tests.integration.webhooks.conftest import Bus, dispatcher, event, retry_beat
from tests.support.receiver import Receiver, fail, ok


def _order_of(receiver: Receiver, path: str, key: str) -> list[str]:
    return [r.webhook_id for r in receiver.requests(path) if r.json().get("key") == key]


@pytest.mark.parametrize("app", ["postgresql", "sqlite"], indirect=True)
def test_a_retrying_key_waits_while_other_keys_flow(bus: Bus, receiver: Receiver) -> None:
    # The receiver fails K's head twice; everything else (and K's head the third time) succeeds.
    stream = bus.stream(partitions=1)
    sub = bus.subscribe(stream, receiver.url("/o"), ordered=True, retry_schedule=[0.5, 0.5, 0.5])
    k1, k2, k3 = (event(key="K", n=i) for i in range(3))
    a1, a2 = event(key="A", n=1), event(key="A", n=2)
    receiver.script("/o", fail(), fail(), ok(), webhook_id=k1["id"])  # K1 fails twice, then succeeds
    bus.publish(stream, [k1, a1, k2, a2, k3])
    with dispatcher(bus.app):
        bus.wait(lambda: bus.deliveries(sub["id"], "waiting"), what="K2 and K3 held behind K1")
        receiver.wait_for(3, "/o")  # K1 (failed), A1, A2: the other key flows while K is blocked
        assert _order_of(receiver, "/o", "A") == [a1["id"], a2["id"]]
        assert _order_of(receiver, "/o", "K") == [k1["id"]]
        k4 = event(key="K", n=4)
        bus.publish(stream, [k4])  # a later batch: K is blocked by the retrying head, so K4 waits too
        bus.wait(lambda: len(bus.deliveries(sub["id"], "waiting")) == 3, what="K4 held")
        with retry_beat(bus.app):
            bus.wait(lambda: len(bus.deliveries(sub["id"], "succeeded")) == 6, what="all delivered")
    assert _order_of(receiver, "/o", "K") == [k1["id"], k1["id"], k1["id"], k2["id"], k3["id"], k4["id"]]


def test_waiting_events_join_the_dead_letters_when_the_head_dies(bus: Bus, receiver: Receiver) -> None:
    stream = bus.stream(partitions=1)
    sub = bus.subscribe(stream, receiver.url("/od"), ordered=True, retry_schedule=[0.2])
    receiver.script("/od", fail())
    head, second, third = (event(key="K", n=i) for i in range(3))
    bus.publish(stream, [head, second, third])
    with dispatcher(bus.app), retry_beat(bus.app):
        dead = bus.wait(lambda: (rows := bus.deliveries(sub["id"], "dead")) and len(rows) == 3 and rows,
                        what="three dead letters")
        receiver.script("/od", ok())
        other = event(key="B")
        bus.publish(stream, [other])
        assert not receiver.wait_ids({other["id"]}, "/od", timeout=10)  # another key is not held by K's death
    by_id = {d["event_id"]: d for d in dead}
    assert by_id[head["id"]]["attempt_count"] == 2
    # The two behind it were never sent: they died because their head did, in order.
    assert by_id[second["id"]]["attempt_count"] == 0 and by_id[third["id"]]["attempt_count"] == 0
    assert [r.webhook_id for r in receiver.requests("/od") if r.json().get("key") == "K"] == [head["id"]] * 2
