"""Dead-letter replay (by ids, by window and filter, scheduled) and recover windows, as replay jobs."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from tests.integration.webhooks.conftest import Bus, dispatcher, event, retry_beat
from tests.support.receiver import Receiver, fail, ok
from tests.support.webhooks import recording_celery
from workers.embedded import EmbeddedWorkers


def _dead_letters(bus: Bus, receiver: Receiver, path: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A subscription whose events all died (the receiver failed them); the subscription."""
    receiver.script(path, fail())
    stream = bus.stream()
    sub = bus.subscribe(stream, receiver.url(path), retry_schedule=[0.2])
    bus.publish(stream, events)
    with dispatcher(bus.app), retry_beat(bus.app):
        bus.wait(lambda: len(bus.deliveries(sub["id"], "dead")) == len(events), what="dead letters")
    receiver.script(path, ok())
    return sub


def _run(bus: Bus, job_id: str) -> dict[str, Any]:
    from app.services.replay_runner import run_job

    with bus.app.app_context():
        run_job(job_id)
    return bus.api("GET", f"/replay-jobs/{job_id}", status=200)


def test_embedded_worker_retries_and_runs_replay_jobs(bus: Bus, receiver: Receiver) -> None:
    # The embedded default: in-process transport, a thread worker whose bootstep runs the dispatcher, and
    # beat's retry_due ticks; enqueue() from a request reaches that worker.
    workers = EmbeddedWorkers(bus.app).start()
    try:
        receiver.script("/emb", fail())
        stream = bus.stream()
        sub = bus.subscribe(stream, receiver.url("/emb"), retry_schedule=[0.2])
        one = event()
        bus.publish(stream, [one])
        dead = bus.wait(lambda: bus.deliveries(sub["id"], "dead"), timeout=30, what="a dead letter via beat")[0]
        assert dead["attempt_count"] == 2
        receiver.script("/emb", ok())
        job_id = bus.api("POST", "/dead-letters/replay", {"ids": [dead["id"]]}, 202)["job_id"]
        job = bus.wait(lambda: (j := bus.api("GET", f"/replay-jobs/{job_id}"))["status"] == "succeeded" and j,
                       what="the replay job done by the worker")
    finally:
        workers.stop()
    assert job["progress"] == {"total": 1, "done": 1, "succeeded": 1, "failed": 0}
    got = receiver.requests("/emb")
    assert [r.webhook_id for r in got] == [one["id"]] * 3  # the replay kept the webhook-id
    assert got[-1].json()["id"] == one["id"]
    row = bus.deliveries(sub["id"], "succeeded")[0]
    assert row["id"] == dead["id"] and row["origin"] == "replay" and row["attempt_count"] == 3


def test_replay_by_window_and_filter(bus: Bus, receiver: Receiver) -> None:
    small, big = event(amount=5), event(amount=500)
    sub = _dead_letters(bus, receiver, "/win", [small, big])
    with recording_celery(bus.app) as celery:
        job_id = bus.api("POST", "/dead-letters/replay",
                         {"subscription": sub["id"], "since": "2000-01-01T00:00:00Z", "filter": "data.amount > 100"},
                         202)["job_id"]
    assert celery.sent == [("replay.run_job", [job_id])]
    job = _run(bus, job_id)
    assert job["status"] == "succeeded"
    assert job["progress"] == {"total": 1, "done": 1, "succeeded": 1, "failed": 0}
    assert [d["event_id"] for d in bus.deliveries(sub["id"], "dead")] == [small["id"]]
    assert _run(bus, job_id)["progress"]["done"] == 1  # a finished job is not run again
    assert [r.webhook_id for r in receiver.requests("/win")].count(big["id"]) == 3


def test_failed_replay_stays_dead_with_the_attempt_recorded(bus: Bus, receiver: Receiver) -> None:
    one = event()
    sub = _dead_letters(bus, receiver, "/again", [one])
    receiver.script("/again", fail(502))
    dead = bus.deliveries(sub["id"], "dead")[0]
    with recording_celery(bus.app):
        job_id = bus.api("POST", "/dead-letters/replay", {"ids": [dead["id"]]}, 202)["job_id"]
    job = _run(bus, job_id)
    assert job["progress"] == {"total": 1, "done": 1, "succeeded": 0, "failed": 1}
    row = bus.deliveries(sub["id"], "dead")[0]
    assert row["attempt_count"] == 3 and row["attempts"][-1]["status_code"] == 502


def test_recover_delivers_a_window_again(bus: Bus, receiver: Receiver) -> None:
    stream = bus.stream(partitions=3)
    sub = bus.subscribe(stream, receiver.url("/rec"), event_types=["order.*"])
    since = datetime.now(UTC) - timedelta(seconds=1)
    sent = [event(key=f"k{i}") for i in range(7)]
    bus.publish(stream, [*sent, event("user.created")])
    with dispatcher(bus.app):
        receiver.wait_for(7, "/rec")
    with recording_celery(bus.app):
        job_id = bus.api("POST", f"/subscriptions/{sub['id']}/recover",
                         {"since": since.isoformat().replace("+00:00", "Z")}, 202)["job_id"]
    job = _run(bus, job_id)
    assert job["status"] == "succeeded"
    # Every event of the window is walked (8), the subscription's types pick 7 and all went out again.
    assert job["progress"] == {"total": 8, "done": 8, "succeeded": 7, "failed": 0}
    counts = [r.webhook_id for r in receiver.requests("/rec")]
    assert all(counts.count(e["id"]) == 2 for e in sent)
    origins = [d["origin"] for d in bus.deliveries(sub["id"], "succeeded")]
    assert origins.count("recover") == 7 and origins.count("live") == 7


def test_scheduled_replay_runs_when_due(bus: Bus, receiver: Receiver) -> None:
    from app.extensions import db
    from app.models import ReplayJob
    from app.services.replay_runner import schedule_due

    one = event()
    sub = _dead_letters(bus, receiver, "/cron", [one])
    template = bus.api("POST", "/replay-jobs", {"subscription": sub["id"], "cron": "*/5 * * * *"}, 201)
    with bus.app.app_context():
        db.session.execute(update(ReplayJob).where(ReplayJob.id == template["id"])
                           .values(next_run_at=datetime.now(UTC) - timedelta(seconds=1)))
        db.session.commit()
    with recording_celery(bus.app) as celery, bus.app.app_context():
        assert schedule_due() >= 1
        assert schedule_due() == 0  # advanced: a second beat tick starts nothing
    runs = [args[0] for name, args in celery.sent if name == "replay.run_job"]
    mine = [r for r in runs if bus.api("GET", f"/replay-jobs/{r}")["subscription"] == sub["id"]]
    assert len(mine) == 1
    assert _run(bus, mine[0])["progress"]["succeeded"] == 1
    assert bus.api("GET", f"/replay-jobs/{template['id']}", status=200)["status"] == "scheduled"
    assert [r.webhook_id for r in receiver.requests("/cron")][-1] == one["id"]
