"""Webhook subscriptions API: validation, secrets (shown once, encrypted, rotated), pause/resume, deliveries."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, text

from tests.support.apps import ADMIN_PASSWORD, TenantCtx, build_app, login, new_tenant
from tests.support.webhooks import HOOK_URL, add_delivery, make_subscription, recording_celery

PUBLIC_URL = "https://93.184.215.14/hook"  # an IP literal: the tests never depend on DNS


def _stream(client: FlaskClient, tenant: TenantCtx) -> str:
    name = f"wh-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/v1/streams", headers=tenant.headers(), json={"name": name}).status_code == 201
    return name


def _error(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.get_json()["error"]["code"]


def _stored_secrets(app: Flask, sub_id: str) -> tuple[str, list[str]]:
    """The raw secrets column as the database holds it, and the live secrets decrypted."""
    from app.extensions import db
    from app.models import Subscription
    from app.services import webhook_secrets

    with app.app_context():
        raw = db.session.execute(text("SELECT secrets FROM subscriptions WHERE id = :id"), {"id": sub_id}).scalar_one()
        sub = db.session.get(Subscription, sub_id)
        return str(raw), webhook_secrets.live_secrets(sub)


def test_create_shows_the_secret_once_and_stores_it_encrypted(app: Flask, client: FlaskClient,
                                                              tenant: TenantCtx) -> None:
    stream = _stream(client, tenant)
    resp = client.post("/api/v1/subscriptions", headers=tenant.headers(), json={
        "stream": stream, "url": HOOK_URL, "event_types": ["order.*", "order.*"],
        "filter": 'data.amount > 100 && type == "order.created"', "ordered": True, "rate_limit_per_s": 50,
        "max_in_flight": 4, "retry_schedule": [1, 2.5, 60], "description": "orders", "timeout_s": 5})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    sub = resp.get_json()
    assert sub["secret"].startswith("whsec_")
    assert sub["stream"] == stream and sub["status"] == "active" and sub["event_types"] == ["order.*"]
    assert (sub["ordered"], sub["rate_limit_per_s"], sub["max_in_flight"], sub["retry_schedule"],
            sub["timeout_s"]) == (True, 50, 4, [1, 2.5, 60], 5)
    assert sub["secrets"] == [{"expires_at": None}]

    shown = client.get(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers("publish"))
    assert shown.status_code == 200 and "secret" not in shown.get_json()
    assert sub["secret"] not in shown.get_data(as_text=True)
    listed = client.get("/api/v1/subscriptions", headers=tenant.headers())
    assert sub["secret"] not in listed.get_data(as_text=True)
    assert [s["id"] for s in listed.get_json()["items"]] == [sub["id"]]

    raw, live = _stored_secrets(app, sub["id"])
    assert live == [sub["secret"]]
    body = sub["secret"].removeprefix("whsec_")
    assert sub["secret"] not in raw and body not in raw and "whsec_" not in raw


def test_defaults(client: FlaskClient, tenant: TenantCtx) -> None:
    sub = make_subscription(client, tenant)
    assert (sub["event_types"], sub["filter"], sub["ordered"], sub["rate_limit_per_s"], sub["max_in_flight"],
            sub["retry_schedule"], sub["timeout_s"], sub["description"]) == (None, None, False, None, 10, None,
                                                                            None, None)


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"url": "ftp://example.org/x"}, "unsafe_url"),
    ({"url": "not a url"}, "unsafe_url"),
    ({"url": "http://user:pw@127.0.0.1/x"}, "unsafe_url"),
    ({"url": 42}, "unsafe_url"),
    ({"filter": "data.amount >"}, "invalid_filter"),
    ({"filter": "nosuchname == 1"}, "invalid_filter"),
    ({"filter": "1 + 2"}, "invalid_filter"),
    ({"filter": 7}, "invalid_filter"),
    ({"event_types": "order.*"}, "invalid_field"),
    ({"event_types": []}, "invalid_field"),
    ({"event_types": ["ok", ""]}, "invalid_field"),
    ({"retry_schedule": [0]}, "invalid_retry_schedule"),
    ({"retry_schedule": []}, "invalid_retry_schedule"),
    ({"retry_schedule": "5,10"}, "invalid_retry_schedule"),
    ({"max_in_flight": 0}, "invalid_field"),
    ({"max_in_flight": 1_000_000}, "invalid_field"),
    ({"max_in_flight": None}, "invalid_field"),
    ({"rate_limit_per_s": 0}, "invalid_field"),
    ({"rate_limit_per_s": 10_001}, "invalid_field"),
    ({"rate_limit_per_s": True}, "invalid_field"),
    ({"timeout_s": 0.5}, "invalid_field"),
    ({"timeout_s": 61}, "invalid_field"),
    ({"ordered": "yes"}, "invalid_field"),
    ({"description": 5}, "invalid_field"),
    ({"colour": "blue"}, "unknown_field"),
]


@pytest.mark.parametrize(("change", "code"), BAD_FIELDS, ids=[f"{next(iter(c))}-{i}" for i, (c, _) in
                                                               enumerate(BAD_FIELDS)])
def test_invalid_fields_are_422_at_create_and_patch(client: FlaskClient, tenant: TenantCtx, change: dict[str, Any],
                                                    code: str) -> None:
    sub = make_subscription(client, tenant)
    resp = client.post("/api/v1/subscriptions", headers=tenant.headers(),
                       json={"stream": sub["stream"], "url": HOOK_URL, **change})
    assert _error(resp) == (422, code), resp.get_data(as_text=True)
    resp = client.patch(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers(), json=change)
    assert _error(resp) == (422, code), resp.get_data(as_text=True)


def test_bad_filter_names_the_parser_message(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = _stream(client, tenant)
    resp = client.post("/api/v1/subscriptions", headers=tenant.headers(),
                       json={"stream": stream, "url": HOOK_URL, "filter": "data.amount > "})
    assert _error(resp) == (422, "invalid_filter")
    assert "parse" in resp.get_json()["error"]["message"]
    assert resp.get_json()["error"]["details"] == {"field": "filter"}


def test_create_needs_a_stream_of_the_tenant_and_a_url(client: FlaskClient, tenant: TenantCtx,
                                                       other_tenant: TenantCtx) -> None:
    theirs = _stream(client, other_tenant)
    resp = client.post("/api/v1/subscriptions", headers=tenant.headers(), json={"stream": theirs, "url": HOOK_URL})
    assert _error(resp) == (404, "stream_not_found")
    stream = _stream(client, tenant)
    assert _error(client.post("/api/v1/subscriptions", headers=tenant.headers(), json={"stream": stream})) == (
        422, "invalid_field")
    assert _error(client.post("/api/v1/subscriptions", headers=tenant.headers(),
                              json={"url": HOOK_URL})) == (422, "invalid_field")
    assert client.post("/api/v1/subscriptions", headers=tenant.headers(), data="{",
                       content_type="application/json").status_code == 400


def test_permissions(client: FlaskClient, tenant: TenantCtx) -> None:
    sub = make_subscription(client, tenant)
    read_only = tenant.headers("publish")  # read, not manage
    assert client.get("/api/v1/subscriptions", headers=read_only).status_code == 200
    assert client.get(f"/api/v1/subscriptions/{sub['id']}/deliveries", headers=read_only).status_code == 200
    for method, path in (("POST", "/api/v1/subscriptions"), ("PATCH", f"/api/v1/subscriptions/{sub['id']}"),
                         ("POST", f"/api/v1/subscriptions/{sub['id']}/pause"),
                         ("POST", f"/api/v1/subscriptions/{sub['id']}/rotate-secret"),
                         ("DELETE", f"/api/v1/subscriptions/{sub['id']}")):
        assert client.open(path, method=method, headers=read_only, json={}).status_code == 403, path
    assert client.get("/api/v1/subscriptions").status_code == 401


def test_patch_changes_settings_but_not_the_stream(client: FlaskClient, tenant: TenantCtx) -> None:
    sub = make_subscription(client, tenant)
    resp = client.patch(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers(), json={
        "filter": 'type == "a"', "description": "new", "retry_schedule": [10, 20], "event_types": None})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert (resp.get_json()["filter"], resp.get_json()["description"], resp.get_json()["retry_schedule"]) == (
        'type == "a"', "new", [10, 20])
    resp = client.patch(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers(), json={"retry_schedule": None,
                                                                                              "filter": ""})
    assert (resp.get_json()["retry_schedule"], resp.get_json()["filter"]) == (None, None)
    other = _stream(client, tenant)
    assert _error(client.patch(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers(),
                               json={"stream": other})) == (422, "immutable_field")
    assert "secret" not in client.get(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers()).get_json()


def test_pause_and_resume(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    from app.extensions import db
    from app.models import Subscription

    sub = make_subscription(client, tenant)
    base = f"/api/v1/subscriptions/{sub['id']}"
    assert client.post(f"{base}/pause", headers=tenant.headers()).get_json()["status"] == "paused"
    assert client.post(f"{base}/pause", headers=tenant.headers()).get_json()["status"] == "paused"
    listed = client.get("/api/v1/subscriptions?status=paused", headers=tenant.headers()).get_json()["items"]
    assert [s["id"] for s in listed] == [sub["id"]]
    assert client.post(f"{base}/resume", headers=tenant.headers()).get_json()["status"] == "active"

    # A subscription disabled by the dispatcher (410 / failing too long) comes back clean.
    with app.app_context():
        row = db.session.get(Subscription, sub["id"])
        row.status, row.disabled_reason = "disabled", "410 Gone"
        row.failing_since = datetime.now(UTC) - timedelta(days=6)
        db.session.commit()
    shown = client.get(base, headers=tenant.headers()).get_json()
    assert (shown["status"], shown["disabled_reason"]) == ("disabled", "410 Gone") and shown["failing_since"]
    resumed = client.post(f"{base}/resume", headers=tenant.headers()).get_json()
    assert (resumed["status"], resumed["disabled_reason"], resumed["failing_since"]) == ("active", None, None)
    assert _error(client.get("/api/v1/subscriptions?status=bogus", headers=tenant.headers())) == (
        400, "invalid_parameter")


def test_rotation_keeps_the_old_secret_live_for_the_grace_period(app: Flask, client: FlaskClient,
                                                                 tenant: TenantCtx) -> None:
    from app.extensions import db
    from app.models import Subscription

    sub = make_subscription(client, tenant)
    old = sub["secret"]
    resp = client.post(f"/api/v1/subscriptions/{sub['id']}/rotate-secret", headers=tenant.headers())
    assert resp.status_code == 200, resp.get_data(as_text=True)
    new = resp.get_json()["secret"]
    assert new.startswith("whsec_") and new != old
    expiries = [s["expires_at"] for s in resp.get_json()["secrets"]]
    assert expiries[0] is None and len(expiries) == 2
    grace_end = datetime.fromisoformat(expiries[1].replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=59) < grace_end - datetime.now(UTC) <= timedelta(hours=24)
    raw, live = _stored_secrets(app, sub["id"])
    assert live == [new, old] and new not in raw and old not in raw
    assert "secret" not in client.get(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers()).get_json()

    # The grace period ends: only the new secret signs.
    with app.app_context():
        row = db.session.get(Subscription, sub["id"])
        row.secrets = [row.secrets[0], {**row.secrets[1],
                                        "expires_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}]
        db.session.commit()
    assert _stored_secrets(app, sub["id"])[1] == [new]
    shown = client.get(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers()).get_json()
    assert shown["secrets"] == [{"expires_at": None}]

    # A rotation with no grace drops the previous secret at once; a bad grace is a 422.
    newest = client.post(f"/api/v1/subscriptions/{sub['id']}/rotate-secret", headers=tenant.headers(),
                         json={"grace_s": 0}).get_json()["secret"]
    assert _stored_secrets(app, sub["id"])[1] == [newest]
    assert _error(client.post(f"/api/v1/subscriptions/{sub['id']}/rotate-secret", headers=tenant.headers(),
                              json={"grace_s": -1})) == (422, "invalid_field")


def test_rotating_again_never_extends_an_expiring_secret(app: Flask) -> None:
    from app.models import Subscription
    from app.services import webhook_secrets

    with app.app_context():
        secret, entry = webhook_secrets.new_secret_entry()
        sub = Subscription(secrets=[entry])
        t0 = datetime(2030, 1, 1, tzinfo=UTC)
        second = webhook_secrets.rotate(sub, 3600, now=t0)
        third = webhook_secrets.rotate(sub, 7200, now=t0 + timedelta(minutes=30))
        assert webhook_secrets.live_secrets(sub, t0 + timedelta(minutes=59)) == [third, second, secret]
        assert webhook_secrets.live_secrets(sub, t0 + timedelta(minutes=61)) == [third, second]
        assert webhook_secrets.live_secrets(sub, t0 + timedelta(hours=3)) == [third]


def test_secrets_key_from_config_or_derived(app: Flask) -> None:
    from cryptography.fernet import Fernet

    from app.services import webhook_secrets

    key = Fernet.generate_key().decode()
    explicit = {"WEBHOOK_SECRET_KEY": key, "SECRET_KEY": "x"}
    token = webhook_secrets.encrypt("whsec_abc", explicit)
    assert Fernet(key).decrypt(token.encode()) == b"whsec_abc"
    derived = {"WEBHOOK_SECRET_KEY": None, "SECRET_KEY": "some secret key"}
    token = webhook_secrets.encrypt("whsec_abc", derived)
    assert Fernet(webhook_secrets.derive_key("some secret key")).decrypt(token.encode()) == b"whsec_abc"
    # Moving to an explicit key: listing the derived one second still opens the old tokens.
    moving = {"WEBHOOK_SECRET_KEY": f"{key},{webhook_secrets.derive_key('some secret key').decode()}",
              "SECRET_KEY": "some secret key"}
    assert webhook_secrets.decrypt(token, moving) == "whsec_abc"
    with pytest.raises(webhook_secrets.SecretKeyError):
        webhook_secrets.decrypt(token, explicit)


def test_delete(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    sub = make_subscription(client, tenant)
    add_delivery(app, sub["id"])
    assert client.delete(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers()).status_code == 204
    assert _error(client.get(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers())) == (
        404, "subscription_not_found")
    assert client.get("/api/v1/dead-letters", headers=tenant.headers()).get_json()["items"] == []
    assert client.delete(f"/api/v1/subscriptions/{sub['id']}", headers=tenant.headers()).status_code == 404


def test_recover_creates_a_job_and_enqueues_it(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    from app.extensions import db
    from app.models import ReplayJob

    sub = make_subscription(client, tenant)
    with recording_celery(app) as celery:
        resp = client.post(f"/api/v1/subscriptions/{sub['id']}/recover", headers=tenant.headers(),
                           json={"since": "2024-05-01T10:00:00+02:00", "until": "2024-05-01T12:00:00Z"})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job_id = resp.get_json()["job_id"]
    assert resp.get_json()["enqueued"] is True and celery.sent == [("replay.run_job", [job_id])]
    with app.app_context():
        job = db.session.get(ReplayJob, job_id)
        assert (job.kind, job.status, job.subscription_id, job.error) == ("recover", "queued", sub["id"], None)
        assert job.selector == {"since": "2024-05-01T08:00:00Z", "until": "2024-05-01T12:00:00Z"}
    shown = client.get(f"/api/v1/replay-jobs/{job_id}", headers=tenant.headers("publish")).get_json()
    assert shown["progress"] == {"total": 0, "done": 0, "succeeded": 0, "failed": 0}

    for body, code in (({"until": "2024-05-01T12:00:00Z"}, "invalid_field"),
                       ({"since": "yesterday"}, "invalid_field"),
                       ({"since": "2024-05-01T12:00:00"}, "invalid_field"),
                       ({"since": "2024-05-02T00:00:00Z", "until": "2024-05-01T00:00:00Z"}, "invalid_window"),
                       ({"since": "2024-05-01T00:00:00Z", "more": 1}, "unknown_field")):
        resp = client.post(f"/api/v1/subscriptions/{sub['id']}/recover", headers=tenant.headers(), json=body)
        assert _error(resp) == (422, code), body


def test_a_failed_enqueue_is_visible_on_the_job(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    sub = make_subscription(client, tenant)
    with recording_celery(app, fail=True):
        resp = client.post(f"/api/v1/subscriptions/{sub['id']}/recover", headers=tenant.headers(),
                           json={"since": "2024-05-01T10:00:00Z"})
    assert resp.status_code == 202 and resp.get_json()["enqueued"] is False
    job = client.get(f"/api/v1/replay-jobs/{resp.get_json()['job_id']}", headers=tenant.headers()).get_json()
    assert job["status"] == "queued" and "broker unreachable" in job["error"]
    # until defaults to the time of the request, resolved when the job is stored
    assert job["selector"]["until"] is not None


@pytest.fixture
def count_queries(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement run while the fixture is active."""
    from app.extensions import db

    statements: list[str] = []

    def _record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", _record)
    yield statements
    event.remove(engine, "before_cursor_execute", _record)


def test_deliveries_list_with_attempts(app: Flask, client: FlaskClient, tenant: TenantCtx,
                                       count_queries: list[str]) -> None:
    sub = make_subscription(client, tenant)
    ids = [add_delivery(app, sub["id"], status="succeeded" if n % 2 else "retrying", attempts=n % 3 + 1,
                        age=timedelta(minutes=10 - n), offset=n) for n in range(6)]
    url = f"/api/v1/subscriptions/{sub['id']}/deliveries"
    resp = client.get(url, headers=tenant.headers("publish"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    items = resp.get_json()["items"]
    assert [d["id"] for d in items] == ids[::-1] and resp.get_json()["next"] is None
    first = items[-1]
    assert (first["event_type"], first["partition"], first["offset"], first["status"], first["attempt_count"]) == (
        "order.created", 0, 0, "retrying", 1)
    assert set(first) >= {"event_id", "origin", "next_attempt_at", "last_status_code", "last_error", "created_at"}
    assert "event" not in first
    attempt = items[-2]["attempts"][1]
    assert set(attempt) == {"at", "duration_ms", "status_code", "response_excerpt", "error"}
    assert attempt["error"] == "connection refused" and attempt["duration_ms"] == 13.5
    assert [len(d["attempts"]) for d in items] == [n % 3 + 1 for n in range(6)][::-1]

    # Two pages, then a filtered list.
    page1 = client.get(url, query_string={"limit": 4}, headers=tenant.headers()).get_json()
    page2 = client.get(url, query_string={"limit": 4, "cursor": page1["next"]}, headers=tenant.headers()).get_json()
    assert [d["id"] for d in page1["items"] + page2["items"]] == ids[::-1] and page2["next"] is None
    done = client.get(url, query_string={"status": "succeeded"}, headers=tenant.headers()).get_json()["items"]
    assert [d["id"] for d in done] == [ids[5], ids[3], ids[1]]
    assert _error(client.get(url, query_string={"status": "nope"}, headers=tenant.headers())) == (
        400, "invalid_parameter")
    assert _error(client.get(url, query_string={"cursor": "garbage!"}, headers=tenant.headers())) == (
        400, "invalid_cursor")

    # No N+1: the attempts of a page come in one query, so a longer page costs no more queries.
    count_queries.clear()
    client.get(url, query_string={"limit": 1}, headers=tenant.headers())
    one = len(count_queries)
    count_queries.clear()
    client.get(url, query_string={"limit": 6}, headers=tenant.headers())
    assert len(count_queries) == one
    assert sum("delivery_attempts" in s for s in count_queries) == 1


def test_changes_are_audited(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    from app.extensions import db
    from app.models import AuditRecord

    sub = make_subscription(client, tenant)
    base = f"/api/v1/subscriptions/{sub['id']}"
    client.patch(base, headers=tenant.headers(), json={"description": "d"})
    client.post(f"{base}/pause", headers=tenant.headers())
    client.post(f"{base}/resume", headers=tenant.headers())
    client.post(f"{base}/rotate-secret", headers=tenant.headers())
    with recording_celery(app):
        client.post(f"{base}/recover", headers=tenant.headers(), json={"since": "2024-01-01T00:00:00Z"})
    client.delete(base, headers=tenant.headers())
    with app.app_context():
        rows = db.session.execute(select(AuditRecord).where(AuditRecord.action.like("subscription.%"),
                                                            AuditRecord.target == sub["id"])
                                  .order_by(AuditRecord.id)).scalars().all()
        assert [r.action for r in rows] == ["subscription.create", "subscription.update", "subscription.pause",
                                            "subscription.resume", "subscription.rotate_secret",
                                            "subscription.delete"]
        assert all(r.actor.startswith("apikey:") and r.ip == "127.0.0.1" for r in rows)
        assert not any(sub["secret"] in str(r.details) for r in rows)
        recover = db.session.execute(select(AuditRecord).where(AuditRecord.action == "subscription.recover",
                                                               AuditRecord.details.is_not(None))
                                     .order_by(AuditRecord.id.desc())).scalars().first()
        assert recover.details["subscription"] == sub["id"]


def test_private_targets_refused_when_not_allowed(tmp_path: Path) -> None:
    strict = build_app(f"sqlite:///{tmp_path / 'strict.db'}", WEBHOOK_ALLOW_PRIVATE=False)
    try:
        client = strict.test_client()
        tenant = new_tenant(client, login(client, "admin", ADMIN_PASSWORD))
        stream = _stream(client, tenant)
        for url in ("http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest",
                    "http://[::1]/hook", "http://192.168.0.10/hook", "http://[::ffff:127.0.0.1]/x",
                    "http://0.0.0.0/x", "http://unresolvable.invalid/x"):
            resp = client.post("/api/v1/subscriptions", headers=tenant.headers(), json={"stream": stream, "url": url})
            assert _error(resp) == (422, "unsafe_url"), url
        resp = client.post("/api/v1/subscriptions", headers=tenant.headers(), json={"stream": stream,
                                                                                    "url": PUBLIC_URL})
        assert resp.status_code == 201, resp.get_data(as_text=True)
        resp = client.patch(f"/api/v1/subscriptions/{resp.get_json()['id']}", headers=tenant.headers(),
                            json={"url": "http://10.0.0.7/x"})
        assert _error(resp) == (422, "unsafe_url")
    finally:
        from app.extensions import db
        from app.services.event_log import close_app_log

        close_app_log(strict)
        with strict.app_context():
            db.engine.dispose()
