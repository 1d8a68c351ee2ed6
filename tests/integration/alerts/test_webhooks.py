"""Webhook notifications go through the bus's own delivery: signed (Standard Webhooks), retried, one per change."""
from __future__ import annotations

from standardwebhooks import Webhook

from tests.integration.alerts.conftest import AlertBus
from tests.integration.webhooks.conftest import dispatcher, retry_beat
from tests.support.receiver import Receiver, fail, ok


def test_firing_and_resolved_reach_a_real_receiver_signed(bus: AlertBus, receiver: Receiver) -> None:
    stream = bus.stream()
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0,
                    notify=[{"webhook": receiver.url("/alerts")}])
    [hook] = rule["notify"]
    assert hook["webhook"] == receiver.url("/alerts") and hook["secret"].startswith("whsec_")
    managed = bus.api("GET", f"/subscriptions/{hook['subscription']}", status=200)
    assert managed["stream"] == "bus.alerts" and rule["id"] in managed["filter"]
    assert "secret" not in bus.api("GET", f"/alert-rules/{rule['id']}", status=200)["notify"][0]
    verifier = Webhook(hook["secret"])
    bus.publish(stream, 1)
    with dispatcher(bus.app):
        assert bus.evaluate() == {"fired": 1}
        [firing] = receiver.wait_for(1, "/alerts")
        event = verifier.verify(firing.body, firing.headers)  # raises on a bad signature
        assert event["type"] == "alert.firing" and event["data"]["rule_id"] == rule["id"]
        assert event["data"]["state"] == "firing" and event["data"]["value"] == 1.0
        assert event["data"]["threshold"] == 0.0 and event["data"]["tenant"] == bus.tenant.slug
        assert bus.evaluate() == {"firing": 1}  # no second notification
        bus.api("POST", f"/streams/{stream}/groups/g/commit", {"offsets": [{"partition": 0, "offset": 1}]}, 204)
        assert bus.evaluate() == {"resolved": 1}
        requests = receiver.wait_for(2, "/alerts")
    resolved = verifier.verify(requests[1].body, requests[1].headers)
    assert resolved["type"] == "alert.resolved" and resolved["data"]["alert_id"] == event["data"]["alert_id"]
    assert resolved["data"]["resolved_at"] is not None
    assert len(receiver.requests("/alerts")) == 2


def test_a_failing_receiver_gets_the_notification_retried(bus: AlertBus, receiver: Receiver) -> None:
    receiver.script("/flaky", fail(503), ok())
    stream = bus.stream()
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0,
                    notify=[{"webhook": receiver.url("/flaky")}])
    sub_id = rule["notify"][0]["subscription"]
    bus.api("PATCH", f"/subscriptions/{sub_id}", {"retry_schedule": [0.2]}, 200)
    bus.publish(stream, 1)
    with dispatcher(bus.app), retry_beat(bus.app):
        assert bus.evaluate() == {"fired": 1}
        first, second = receiver.wait_for(2, "/flaky")
    assert first.webhook_id == second.webhook_id  # the same notification, attempted again


def test_each_rule_notifies_only_its_own_webhooks(bus: AlertBus, receiver: Receiver) -> None:
    stream = bus.stream()
    first = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0,
                     notify=[{"webhook": receiver.url("/a")}])
    second = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0,
                      notify=[{"webhook": receiver.url("/b")}])
    bus.publish(stream, 1)
    with dispatcher(bus.app):
        assert bus.evaluate() == {"fired": 2}
        [to_a] = receiver.wait_for(1, "/a")
        [to_b] = receiver.wait_for(1, "/b")
        # A later notification of the first rule goes to /a alone: /b's subscription filters it out.
        bus.api("POST", f"/streams/{stream}/groups/g/commit", {"offsets": [{"partition": 0, "offset": 1}]}, 204)
        bus.api("PATCH", f"/alert-rules/{second['id']}", {"enabled": False}, 200)
        assert bus.evaluate() == {"resolved": 1}
        receiver.wait_for(2, "/a")
    assert to_a.json()["data"]["rule_id"] == first["id"] and to_b.json()["data"]["rule_id"] == second["id"]
    assert len(receiver.requests("/b")) == 1


def test_patch_and_delete_keep_the_managed_subscriptions_in_step(bus: AlertBus, receiver: Receiver) -> None:
    stream = bus.stream()
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0,
                    notify=[{"webhook": receiver.url("/one")}])
    one = rule["notify"][0]["subscription"]
    patched = bus.api("PATCH", f"/alert-rules/{rule['id']}",
                      {"notify": [{"webhook": receiver.url("/one")}, {"webhook": receiver.url("/two")}]}, 200)
    kept, added = patched["notify"]
    assert kept == {"webhook": receiver.url("/one"), "subscription": one}  # no new secret for a kept webhook
    assert added["secret"].startswith("whsec_")
    patched = bus.api("PATCH", f"/alert-rules/{rule['id']}", {"notify": [{"webhook": receiver.url("/two")}]}, 200)
    assert [n["subscription"] for n in patched["notify"]] == [added["subscription"]]
    bus.api("GET", f"/subscriptions/{one}", status=404)
    bus.api("DELETE", f"/alert-rules/{rule['id']}", None, 204)
    bus.api("GET", f"/subscriptions/{added['subscription']}", status=404)
    bus.api("GET", f"/alert-rules/{rule['id']}", status=404)
