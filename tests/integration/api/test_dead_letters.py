"""Dead letters and replay jobs API: list, inspect, replay by ids or window, scheduled (cron) jobs."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.support.apps import TenantCtx
from tests.support.webhooks import add_delivery, make_subscription, recording_celery


def _error(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.get_json()["error"]["code"]


def _job(app: Flask, job_id: str) -> Any:
    from app.extensions import db
    from app.models import ReplayJob

    with app.app_context():
        job = db.session.get(ReplayJob, job_id)
        db.session.expunge(job)
        return job


def test_list_and_inspect(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    a, b = make_subscription(client, tenant), make_subscription(client, tenant)
    old = add_delivery(app, a["id"], age=timedelta(hours=3))
    new = add_delivery(app, a["id"], age=timedelta(minutes=5), event={
        "specversion": "1.0", "id": "evt-1", "type": "order.created", "source": "/s", "data": {"amount": 7}})
    other_sub = add_delivery(app, b["id"], age=timedelta(minutes=1))
    add_delivery(app, a["id"], status="succeeded")
    add_delivery(app, a["id"], status="retrying")

    read = tenant.headers("publish")
    items = client.get("/api/v1/dead-letters", headers=read).get_json()["items"]
    assert [d["id"] for d in items] == [other_sub, new, old]
    assert all(d["status"] == "dead" and d["dead_at"] for d in items) and "event" not in items[0]
    only_a = client.get("/api/v1/dead-letters", query_string={"subscription": a["id"]}, headers=read).get_json()
    assert [d["id"] for d in only_a["items"]] == [new, old]
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    recent = client.get("/api/v1/dead-letters", query_string={"subscription": a["id"], "since": since},
                        headers=read).get_json()["items"]
    assert [d["id"] for d in recent] == [new]
    until = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    older = client.get("/api/v1/dead-letters", query_string={"until": until}, headers=read).get_json()["items"]
    assert [d["id"] for d in older] == [old]
    page1 = client.get("/api/v1/dead-letters", query_string={"limit": 2}, headers=read).get_json()
    page2 = client.get("/api/v1/dead-letters", query_string={"limit": 2, "cursor": page1["next"]},
                       headers=read).get_json()
    assert [d["id"] for d in page1["items"] + page2["items"]] == [other_sub, new, old] and page2["next"] is None
    assert _error(client.get("/api/v1/dead-letters?since=yesterday", headers=read)) == (400, "invalid_parameter")

    shown = client.get(f"/api/v1/dead-letters/{new}", headers=read)
    assert shown.status_code == 200, shown.get_data(as_text=True)
    letter = shown.get_json()
    assert letter["event"] == {"specversion": "1.0", "id": "evt-1", "type": "order.created", "source": "/s",
                               "data": {"amount": 7}}
    assert (letter["event_id"], letter["subscription"], letter["attempt_count"]) == ("evt-1", a["id"], 2)
    assert [(x["status_code"], x["error"]) for x in letter["attempts"]] == [(500, None), (None, "connection refused")]
    succeeded = add_delivery(app, a["id"], status="succeeded")
    assert _error(client.get(f"/api/v1/dead-letters/{succeeded}", headers=read)) == (404, "dead_letter_not_found")


def test_other_tenants_dead_letters_are_invisible(app: Flask, client: FlaskClient, tenant: TenantCtx,
                                                  other_tenant: TenantCtx) -> None:
    theirs = make_subscription(client, other_tenant)
    letter = add_delivery(app, theirs["id"])
    assert client.get("/api/v1/dead-letters", headers=tenant.headers()).get_json()["items"] == []
    assert client.get("/api/v1/dead-letters", query_string={"subscription": theirs["id"]},
                      headers=tenant.headers()).get_json()["items"] == []
    assert _error(client.get(f"/api/v1/dead-letters/{letter}", headers=tenant.headers())) == (
        404, "dead_letter_not_found")
    with recording_celery(app) as celery:
        resp = client.post("/api/v1/dead-letters/replay", headers=tenant.headers(), json={"ids": [letter]})
        assert _error(resp) == (404, "dead_letter_not_found")
        resp = client.post("/api/v1/dead-letters/replay", headers=tenant.headers(),
                           json={"subscription": theirs["id"]})
        assert _error(resp) == (404, "subscription_not_found")
    assert celery.sent == []


def test_replay_by_ids(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    sub = make_subscription(client, tenant)
    ids = [add_delivery(app, sub["id"]) for _ in range(3)]
    with recording_celery(app) as celery:
        resp = client.post("/api/v1/dead-letters/replay", headers=tenant.headers(), json={"ids": ids + ids[:1]})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job_id = resp.get_json()["job_id"]
    assert celery.sent == [("replay.run_job", [job_id])]
    job = _job(app, job_id)
    assert (job.kind, job.status, job.subscription_id, job.selector, job.total) == (
        "dead_letters", "queued", sub["id"], {"ids": ids}, 3)
    shown = client.get(f"/api/v1/replay-jobs/{job_id}", headers=tenant.headers("publish")).get_json()
    assert shown["progress"] == {"total": 3, "done": 0, "succeeded": 0, "failed": 0}
    assert shown["status"] == "queued" and shown["kind"] == "dead_letters" and shown["created_by"].startswith("apikey:")

    # Ids of two subscriptions: the job names none.
    other = make_subscription(client, tenant)
    mixed = [ids[0], add_delivery(app, other["id"])]
    with recording_celery(app):
        resp = client.post("/api/v1/dead-letters/replay", headers=tenant.headers(), json={"ids": mixed})
    assert _job(app, resp.get_json()["job_id"]).subscription_id is None

    live = add_delivery(app, sub["id"], status="succeeded")
    for body, expected in (({"ids": [ids[0], live]}, (404, "dead_letter_not_found")),
                           ({"ids": []}, (422, "invalid_field")),
                           ({"ids": "x"}, (422, "invalid_field")),
                           ({"ids": [1]}, (422, "invalid_field")),
                           ({"ids": ids, "filter": "true"}, (422, "unknown_field"))):
        assert _error(client.post("/api/v1/dead-letters/replay", headers=tenant.headers(), json=body)) == expected


def test_replay_by_window_and_filter(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    sub = make_subscription(client, tenant)
    with recording_celery(app) as celery:
        resp = client.post("/api/v1/dead-letters/replay", headers=tenant.headers(), json={
            "subscription": sub["id"], "since": "2024-05-01T00:00:00Z", "until": "2024-05-02T00:00:00+01:00",
            "filter": 'data.amount > 100 && type == "order.created"'})
        assert resp.status_code == 202, resp.get_data(as_text=True)
        everything = client.post("/api/v1/dead-letters/replay", headers=tenant.headers(), json={})
        assert everything.status_code == 202
    assert len(celery.sent) == 2
    job = _job(app, resp.get_json()["job_id"])
    assert job.selector == {"subscription": sub["id"], "since": "2024-05-01T00:00:00Z",
                            "until": "2024-05-01T23:00:00Z", "filter": 'data.amount > 100 && type == "order.created"'}
    assert _job(app, everything.get_json()["job_id"]).selector == {"subscription": None, "since": None,
                                                                   "until": None, "filter": None}
    for body, expected in (({"filter": "data.amount >"}, (422, "invalid_filter")),
                           ({"since": "2024-05-02T00:00:00Z", "until": "2024-05-01T00:00:00Z"},
                            (422, "invalid_window")),
                           ({"since": "May 1st"}, (422, "invalid_field")),
                           ({"subscription": 5}, (422, "invalid_field")),
                           ({"subscription": "00000000-0000-0000-0000-000000000000"},
                            (404, "subscription_not_found"))):
        assert _error(client.post("/api/v1/dead-letters/replay", headers=tenant.headers(), json=body)) == expected
    assert client.post("/api/v1/dead-letters/replay", headers=tenant.headers("publish"), json={}).status_code == 403


def test_dead_letter_query_is_the_runners_window(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    from app.extensions import db
    from app.services.dead_letters import dead_letter_query
    from tests.support.webhooks import tenant_id

    sub = make_subscription(client, tenant)
    inside = add_delivery(app, sub["id"], age=timedelta(minutes=30))
    add_delivery(app, sub["id"], age=timedelta(hours=2))
    now = datetime.now(UTC)
    with app.app_context():
        rows = db.session.execute(dead_letter_query(tenant_id(app, tenant.slug), sub["id"],
                                                    now - timedelta(hours=1), now)).scalars().all()
        assert [r.id for r in rows] == [inside]


@pytest.mark.parametrize("cron", ["61 * * * *", "* * * * * *", "bogus", "", "0 0 31 2 * 2024", 5])
def test_bad_cron_is_422(client: FlaskClient, tenant: TenantCtx, cron: Any) -> None:
    sub = make_subscription(client, tenant)
    resp = client.post("/api/v1/replay-jobs", headers=tenant.headers(), json={"subscription": sub["id"], "cron": cron})
    assert _error(resp) == (422, "invalid_cron"), resp.get_data(as_text=True)


def test_scheduled_jobs(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    from app.extensions import db
    from app.models import AuditRecord

    sub = make_subscription(client, tenant)
    resp = client.post("/api/v1/replay-jobs", headers=tenant.headers(), json={
        "subscription": sub["id"], "cron": "0  3 * * *", "selector": {"filter": 'type == "a"', "max_age_s": 86400}})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    job = resp.get_json()
    assert (job["status"], job["kind"], job["cron"], job["subscription"]) == ("scheduled", "dead_letters", "0 3 * * *",
                                                                              sub["id"])
    assert job["selector"] == {"filter": 'type == "a"', "max_age_s": 86400}
    next_run = datetime.fromisoformat(job["next_run_at"].replace("Z", "+00:00"))
    assert (next_run.hour, next_run.minute) == (3, 0) and timedelta(0) < next_run - datetime.now(UTC) <= timedelta(
        days=1)
    hourly = client.post("/api/v1/replay-jobs", headers=tenant.headers(),
                         json={"subscription": sub["id"], "cron": "@hourly"}).get_json()
    assert hourly["selector"] == {"filter": None, "max_age_s": None}

    for body, expected in (({"subscription": sub["id"], "cron": "@daily", "selector": {"filter": "x >"}},
                            (422, "invalid_filter")),
                           ({"subscription": sub["id"], "cron": "@daily", "selector": {"ids": ["a"]}},
                            (422, "unknown_field")),
                           ({"subscription": sub["id"], "cron": "@daily", "selector": {"max_age_s": 0}},
                            (422, "invalid_field")),
                           ({"cron": "@daily"}, (422, "invalid_field")),
                           ({"subscription": "00000000-0000-0000-0000-000000000000", "cron": "@daily"},
                            (404, "subscription_not_found"))):
        assert _error(client.post("/api/v1/replay-jobs", headers=tenant.headers(), json=body)) == expected

    listed = client.get("/api/v1/replay-jobs", query_string={"status": "scheduled"}, headers=tenant.headers("publish"))
    assert [j["id"] for j in listed.get_json()["items"]] == [hourly["id"], job["id"]]
    assert _error(client.get("/api/v1/replay-jobs?kind=nope", headers=tenant.headers())) == (400, "invalid_parameter")

    assert client.delete(f"/api/v1/replay-jobs/{job['id']}", headers=tenant.headers("publish")).status_code == 403
    assert client.delete(f"/api/v1/replay-jobs/{job['id']}", headers=tenant.headers()).status_code == 204
    assert _error(client.get(f"/api/v1/replay-jobs/{job['id']}", headers=tenant.headers())) == (
        404, "replay_job_not_found")
    with recording_celery(app):
        queued = client.post(f"/api/v1/subscriptions/{sub['id']}/recover", headers=tenant.headers(),
                             json={"since": "2024-01-01T00:00:00Z"}).get_json()["job_id"]
    assert _error(client.delete(f"/api/v1/replay-jobs/{queued}", headers=tenant.headers())) == (
        409, "job_not_scheduled")
    with app.app_context():
        actions = db.session.execute(select(AuditRecord.action).where(
            AuditRecord.target.in_([job["id"], hourly["id"]])).order_by(AuditRecord.id)).scalars().all()
    assert actions == ["replay_job.schedule", "replay_job.schedule", "replay_job.cancel"]


def test_replay_jobs_list_pages_newest_first(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    sub = make_subscription(client, tenant)
    with recording_celery(app):
        ids = [client.post(f"/api/v1/subscriptions/{sub['id']}/recover", headers=tenant.headers(),
                           json={"since": "2024-01-01T00:00:00Z"}).get_json()["job_id"] for _ in range(3)]
    page1 = client.get("/api/v1/replay-jobs", query_string={"limit": 2}, headers=tenant.headers()).get_json()
    page2 = client.get("/api/v1/replay-jobs", query_string={"limit": 2, "cursor": page1["next"]},
                       headers=tenant.headers()).get_json()
    assert [j["id"] for j in page1["items"] + page2["items"]] == ids[::-1]
    by_sub = client.get("/api/v1/replay-jobs", query_string={"subscription": sub["id"], "kind": "recover"},
                        headers=tenant.headers()).get_json()["items"]
    assert len(by_sub) == 3


def test_replays_are_audited(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    from app.extensions import db
    from app.models import AuditRecord

    sub = make_subscription(client, tenant)
    letter = add_delivery(app, sub["id"])
    with recording_celery(app):
        job_id = client.post("/api/v1/dead-letters/replay", headers=tenant.headers(),
                             json={"ids": [letter]}).get_json()["job_id"]
    with app.app_context():
        row = db.session.execute(select(AuditRecord).where(AuditRecord.target == job_id)).scalar_one()
        assert (row.action, row.target_type, row.details["selector"]) == (
            "dead_letters.replay", "replay_job", {"ids": [letter], "count": 1})
