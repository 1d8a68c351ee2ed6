"""The alert life cycle: pending for ``for_s``, firing, resolved; one notification per change, re-notify, silences."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from flask import Flask

from tests.integration.alerts.conftest import AlertBus, Inbox
from tests.support.webhooks import recording_celery

ADDRESS = "oncall@example.com"


def _lagging(bus: AlertBus, **fields: object) -> tuple[str, dict[str, object]]:
    """A stream whose group lags by 1 and a consumer_lag rule on it (threshold 0) notifying ADDRESS."""
    stream = bus.stream()
    bus.publish(stream, 1)
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0,
                    notify=[{"email": ADDRESS}], **fields)
    return stream, rule


def _catch_up(bus: AlertBus, stream: str) -> None:
    bus.api("POST", f"/streams/{stream}/groups/g/commit", {"offsets": [{"partition": 0, "offset": 1}]}, 204)


def _emails(sent: list[tuple[str, list[object]]]) -> list[str]:
    """Subjects of the e-mails enqueued."""
    return [args[1]["subject"] for name, args in sent if name == "alerts.send_email"]  # type: ignore[index]


def test_pending_for_for_s_then_firing_then_resolved_with_history(bus: AlertBus) -> None:
    stream, rule = _lagging(bus, for_s=60)
    t0 = datetime.now(UTC)
    with recording_celery(bus.app) as celery:
        assert bus.evaluate(t0) == {"pending": 1}
        assert bus.state(rule["id"]) == "pending"
        assert bus.evaluate(t0 + timedelta(seconds=59)) == {"pending": 1}
        assert celery.sent == []  # nothing is said while pending
        assert bus.evaluate(t0 + timedelta(seconds=60)) == {"fired": 1}
        [firing] = bus.alerts("firing")
        assert firing["since"].startswith(t0.strftime("%Y-%m-%dT%H:%M"))
        assert firing["fired_at"] is not None and firing["resolved_at"] is None
        _catch_up(bus, stream)
        assert bus.evaluate(t0 + timedelta(seconds=90)) == {"resolved": 1}
        subjects = _emails(celery.sent)
    assert len(subjects) == 2 and subjects[0].startswith("[FIRING]") and subjects[1].startswith("[RESOLVED]")
    [resolved] = bus.alerts("resolved")
    assert resolved["id"] == firing["id"] and resolved["resolved_at"] is not None and resolved["notifications"] == 2
    assert bus.alerts("firing") == []
    # A new episode is a new alert: the history keeps the old one.
    bus.publish(stream, 1)
    assert bus.evaluate(t0 + timedelta(seconds=120)) == {"pending": 1}
    assert len(bus.alerts()) == 2


def test_a_blip_shorter_than_for_s_leaves_nothing(bus: AlertBus) -> None:
    stream, rule = _lagging(bus, for_s=60)
    t0 = datetime.now(UTC)
    with recording_celery(bus.app) as celery:
        assert bus.evaluate(t0) == {"pending": 1}
        _catch_up(bus, stream)
        assert bus.evaluate(t0 + timedelta(seconds=30)) == {"cleared": 1}
    assert celery.sent == [] and bus.alerts() == [] and bus.state(rule["id"]) == "ok"


def test_evaluating_twice_notifies_once(bus: AlertBus) -> None:
    _lagging(bus)
    now = datetime.now(UTC)
    with recording_celery(bus.app) as celery:
        assert bus.evaluate(now) == {"fired": 1}
        assert bus.evaluate(now) == {"firing": 1}
        assert bus.evaluate(now + timedelta(seconds=3600)) == {"firing": 1}  # no renotify_s: never again
    assert len(_emails(celery.sent)) == 1


def test_concurrent_evaluations_notify_once(bus: AlertBus) -> None:
    _lagging(bus)
    now = datetime.now(UTC)
    barrier = threading.Barrier(4)
    results: list[dict[str, int]] = []

    def run(app: Flask) -> None:
        barrier.wait()
        results.append(bus.evaluate(now))

    with recording_celery(bus.app) as celery:
        threads = [threading.Thread(target=run, args=(bus.app,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(results) == 4
    assert len(_emails(celery.sent)) == 1, results
    assert len(bus.alerts()) == 1


def test_renotify_while_firing(bus: AlertBus) -> None:
    _lagging(bus, renotify_s=600)
    t0 = datetime.now(UTC)
    with recording_celery(bus.app) as celery:
        assert bus.evaluate(t0) == {"fired": 1}
        assert bus.evaluate(t0 + timedelta(seconds=300)) == {"firing": 1}
        assert bus.evaluate(t0 + timedelta(seconds=600)) == {"renotified": 1}
        assert bus.evaluate(t0 + timedelta(seconds=900)) == {"firing": 1}
        assert bus.evaluate(t0 + timedelta(seconds=1200)) == {"renotified": 1}
    assert len(_emails(celery.sent)) == 3
    assert bus.alerts("firing")[0]["notifications"] == 3


def test_silenced_rule_keeps_its_state_and_notifies_when_the_silence_ends(bus: AlertBus) -> None:
    stream, rule = _lagging(bus)
    until = datetime.now(UTC) + timedelta(hours=1)
    silenced = bus.api("POST", f"/alert-rules/{rule['id']}/silence", {"until": until.isoformat()}, 200)
    assert silenced["silenced"] is True
    with recording_celery(bus.app) as celery:
        assert bus.evaluate() == {"silenced": 1}
        assert bus.state(rule["id"]) == "firing"
        assert celery.sent == []
        assert bus.evaluate(until + timedelta(seconds=1)) == {"fired": 1}  # told once the silence is over
        assert len(_emails(celery.sent)) == 1
    lifted = bus.api("POST", f"/alert-rules/{rule['id']}/silence", {"until": None}, 200)
    assert lifted["silenced"] is False and lifted["silenced_until"] is None


def test_resolved_during_a_silence_is_not_notified(bus: AlertBus) -> None:
    stream, rule = _lagging(bus)
    with recording_celery(bus.app) as celery:
        assert bus.evaluate() == {"fired": 1}
        until = datetime.now(UTC) + timedelta(hours=1)
        bus.api("POST", f"/alert-rules/{rule['id']}/silence", {"until": until.isoformat()}, 200)
        _catch_up(bus, stream)
        assert bus.evaluate() == {"resolved": 1}
    assert [s.split("]")[0] for s in _emails(celery.sent)] == ["[FIRING"]


def test_email_reaches_a_real_smtp_server(bus: AlertBus, smtp: tuple[Inbox, int]) -> None:
    from workers.tasks.alerts import send_email

    inbox, _ = smtp
    address = f"oncall-{bus.tenant.slug}@example.com"
    stream = bus.stream()
    bus.publish(stream, 1)
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0, notify=[{"email": address}])
    with recording_celery(bus.app) as celery:
        assert bus.evaluate() == {"fired": 1}
    [(name, args)] = celery.sent
    assert name == "alerts.send_email" and args[0] == address
    with bus.app.app_context():
        send_email.run(*args)  # what the worker runs for the message enqueued
    [message] = inbox.to(address)
    assert message["Subject"].startswith("[FIRING]") and rule["name"] in message["Subject"]
    assert message["From"] == "bus@test.invalid"
    body = message.get_payload(decode=True).decode()
    assert rule["id"] in body and "consumer_lag" in body and "Value:       1.0" in body


def test_email_task_retries_while_the_smtp_server_refuses(bus: AlertBus, smtp: tuple[Inbox, int]) -> None:
    from workers.tasks.alerts import send_email

    inbox, _ = smtp
    address = f"retry-{bus.tenant.slug}@example.com"
    inbox.refuse, inbox.refused = 2, 0
    with bus.app.app_context():
        result = send_email.apply(args=[address, {"subject": "[FIRING] x", "text": "body"}])
    assert result.successful(), result.traceback
    assert inbox.refused == 2 and len(inbox.to(address)) == 1  # refused twice, then delivered once
