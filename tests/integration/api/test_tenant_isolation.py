"""Tenant isolation: tenant B walks EVERY /api/v1 endpoint with tenant A's names and ids and learns nothing.

The walk enumerates ``app.url_map``, so an endpoint added later is walked too. When a new rule has a
path argument this file does not know, the test fails and names it: add a sample to ``SAMPLES`` (A's
value) and ``GHOSTS`` (a value that exists nowhere), and, for a write, a plausible body to ``BODIES``
so that B's request passes validation and reaches the tenant check.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.apps import TenantCtx, login
from tests.support.webhooks import HOOK_URL, add_delivery

# FAB's own routes: login, OpenAPI document, menu. Everything else under /api/v1 is the bus's.
EXCLUDED_PREFIXES = ("/api/v1/security/", "/api/v1/menu/", "/api/v1/_openapi", "/api/<version>/_openapi",
                     "/api/v1/openapi")
WRITE_METHODS = {"POST", "PUT", "PATCH"}
ARG_RE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
PASSWORD = "isolation-walk-password"


@dataclass
class World:
    """Tenant A's resources, and what of them must never reach B."""

    slug: str
    stream: str
    group: str
    key_id: str
    partition: int
    offset: int
    subscription_id: str
    delivery_id: str  # a dead letter of the subscription
    job_id: str  # a scheduled replay job of the subscription
    rule_id: str = ""  # an alert rule on the subscription
    # Strings that identify A's data: never in B's answers unless B sent them itself.
    markers: set[str] = field(default_factory=set)
    # A's names: B may use the same names, so they are checked in B's lists only.
    names: set[str] = field(default_factory=set)


# Path arguments: A's value, and a value that exists in no tenant (the answers must be the same).
SAMPLES: dict[str, Callable[[World], Any]] = {
    "name": lambda w: w.stream,
    "group": lambda w: w.group,
    "partition": lambda w: w.partition,
    "offset": lambda w: w.offset,
    "key_id": lambda w: w.key_id,
    "subscription_id": lambda w: w.subscription_id,
    "delivery_id": lambda w: w.delivery_id,
    "job_id": lambda w: w.job_id,
    "rule_id": lambda w: w.rule_id,
}
GHOSTS: dict[str, Callable[[World], Any]] = {
    "name": lambda w: f"ghost-{uuid.uuid4().hex[:8]}",
    "group": lambda w: f"ghost-{uuid.uuid4().hex[:8]}",
    "partition": lambda w: w.partition,
    "offset": lambda w: w.offset,
    "key_id": lambda w: str(uuid.uuid4()),
    "subscription_id": lambda w: str(uuid.uuid4()),
    "delivery_id": lambda w: str(uuid.uuid4()),
    "job_id": lambda w: str(uuid.uuid4()),
    "rule_id": lambda w: str(uuid.uuid4()),
}
# Bodies for writes, valid but for the tenant check. Unlisted writes get {} (and a looser check).
BODIES: dict[tuple[str, str], Callable[[World], Any]] = {
    ("POST", "/api/v1/streams"): lambda w: {"name": f"b-walk-{uuid.uuid4().hex[:8]}"},
    ("PATCH", "/api/v1/streams/<name>"): lambda w: {"description": "written by B"},
    ("POST", "/api/v1/streams/<name>/events"): lambda w: {"type": "b.wrote", "data": {"b": True}},
    ("POST", "/api/v1/streams/<name>/groups/<group>/fetch"): lambda w: {"max": 10, "wait_ms": 0},
    ("POST", "/api/v1/streams/<name>/groups/<group>/commit"):
        lambda w: {"offsets": [{"partition": w.partition, "offset": 0}]},
    ("POST", "/api/v1/streams/<name>/groups/<group>/reset"): lambda w: {"to": "earliest"},
    ("POST", "/api/v1/api-keys"): lambda w: {"name": "b-walk", "scopes": ["manage"], "tenant": w.slug},
    ("POST", "/api/v1/tenants"): lambda w: {"slug": f"b-walk-{uuid.uuid4().hex[:8]}", "name": "B"},
    ("POST", "/api/v1/subscriptions"): lambda w: {"stream": w.stream, "url": HOOK_URL},
    ("PATCH", "/api/v1/subscriptions/<subscription_id>"): lambda w: {"description": "written by B"},
    ("POST", "/api/v1/subscriptions/<subscription_id>/pause"): lambda w: {},
    ("POST", "/api/v1/subscriptions/<subscription_id>/resume"): lambda w: {},
    ("POST", "/api/v1/subscriptions/<subscription_id>/rotate-secret"): lambda w: {"grace_s": 60},
    ("POST", "/api/v1/subscriptions/<subscription_id>/recover"): lambda w: {"since": "2024-01-01T00:00:00Z"},
    ("POST", "/api/v1/dead-letters/replay"): lambda w: {"ids": [w.delivery_id]},
    ("POST", "/api/v1/replay-jobs"): lambda w: {"subscription": w.subscription_id, "cron": "@hourly"},
    ("POST", "/api/v1/alert-rules"): lambda w: {"name": "b-walk", "kind": "dead_letters",
                                                "target": {"subscription": w.subscription_id}, "threshold": 0},
    ("PATCH", "/api/v1/alert-rules/<rule_id>"): lambda w: {"threshold": 99},
    ("POST", "/api/v1/alert-rules/<rule_id>/silence"): lambda w: {"until": None},
    ("POST", "/api/v1/users"): lambda w: {"username": f"b-walk-{uuid.uuid4().hex[:8]}", "password": PASSWORD,
                                          "role": "Admin", "tenants": [w.slug]},
}
# Query strings for list endpoints that can name another tenant's resource.
QUERIES: dict[str, Callable[[World], dict[str, Any]]] = {
    "/api/v1/groups": lambda w: {"stream": w.stream},
    "/api/v1/subscriptions": lambda w: {"stream": w.stream},
    "/api/v1/dead-letters": lambda w: {"subscription": w.subscription_id},
    "/api/v1/replay-jobs": lambda w: {"subscription": w.subscription_id},
    "/api/v1/alerts": lambda w: {"rule": w.rule_id},
}
# Collection endpoints whose answer to B is fixed: acting in A's tenant or as an Admin.
EXPECTED: dict[tuple[str, str], set[int]] = {
    ("POST", "/api/v1/api-keys"): {404},
    ("POST", "/api/v1/tenants"): {403},
    ("GET", "/api/v1/tenants"): {403},
    ("POST", "/api/v1/users"): {403},
    ("GET", "/api/v1/users"): {403},
    # B names A's stream, subscription or dead letter: unknown in B's tenant.
    ("POST", "/api/v1/subscriptions"): {404},
    ("POST", "/api/v1/dead-letters/replay"): {404},
    ("POST", "/api/v1/replay-jobs"): {404},
    ("POST", "/api/v1/alert-rules"): {404},
}


def api_endpoints(app: Flask) -> list[tuple[Any, str]]:
    """(rule, method) of every bus /api/v1 endpoint, ordered so that nothing B might destroy hides a leak:
    resource endpoints before collections (B creates nothing before), DELETEs last."""
    rules = [r for r in app.url_map.iter_rules()
             if r.rule.startswith("/api/v1/") and not r.rule.startswith(EXCLUDED_PREFIXES)]
    pairs = [(r, m) for r in rules for m in sorted(r.methods - {"HEAD", "OPTIONS"})]
    return sorted(pairs, key=lambda p: (p[1] == "DELETE", not p[0].arguments, p[0].rule, p[1]))


def fill(rule: str, values: dict[str, Callable[[World], Any]], world: World) -> str:
    """The rule's path with each argument replaced by its value."""
    return ARG_RE.sub(lambda m: quote(str(values[m.group(1)](world)), safe=""), rule)


def leaks(text: str, markers: set[str], sent: str) -> list[str]:
    """The markers in an answer that the request did not carry itself."""
    return sorted(m for m in markers if m in text and m not in sent)


def call(client: FlaskClient, method: str, path: str, headers: dict[str, str], body: Any,
         query: dict[str, Any] | None = None) -> Any:
    """One request; writes carry a JSON body."""
    if method in WRITE_METHODS:
        return client.open(path, method=method, headers=headers, json=body, query_string=query)
    return client.open(path, method=method, headers=headers, query_string=query)


def build_world(client: FlaskClient, a: TenantCtx) -> World:
    """Tenant A with a stream, events, a group commit and an extra API key."""
    tag = uuid.uuid4().hex[:10]
    secret = f"a-secret-{tag}"
    stream, group = f"iso-{tag}", f"grp-{tag}"
    resp = client.post("/api/v1/streams", headers=a.headers("manage"),
                       json={"name": stream, "partitions": 2, "description": f"desc-{secret}"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    stream_id = resp.get_json()["id"]
    events = [{"type": "a.happened", "data": {"secret": secret, "n": n}, "key": f"k{n}", "id": str(uuid.uuid4())}
              for n in range(3)]
    resp = client.post(f"/api/v1/streams/{stream}/events", headers=a.headers("publish"), json={"events": events})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    first = resp.get_json()["results"][0]
    resp = client.post(f"/api/v1/streams/{stream}/groups/{group}/commit", headers=a.headers("consume"),
                       json={"offsets": [{"partition": first["partition"], "offset": first["offset"] + 1}]})
    assert resp.status_code == 204, resp.get_data(as_text=True)
    resp = client.post("/api/v1/api-keys", headers=a.headers("manage"),
                       json={"name": f"key-{tag}", "scopes": ["manage"]})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    key = resp.get_json()
    keys = client.get("/api/v1/api-keys", headers=a.headers("manage")).get_json()["items"]
    sub, letter, job = _webhooks(client, a, stream, secret, events[0])
    markers = {a.slug, stream_id, secret, key["key"], *(e["id"] for e in events)}
    markers |= {k["id"] for k in keys} | {k["prefix"] for k in keys} | set(a.keys.values())
    markers |= {sub["id"], sub["secret"], sub["url"], letter, job}
    rule = _alert_rule(client, a, sub["id"], secret)
    markers |= {rule["id"], rule["name"], rule["notify"][0]["subscription"], rule["notify"][0]["secret"]}
    return World(slug=a.slug, stream=stream, group=group, key_id=key["id"], partition=first["partition"],
                 offset=first["offset"], subscription_id=sub["id"], delivery_id=letter, job_id=job,
                 rule_id=rule["id"], markers=markers, names={stream, group, rule["name"]})


def _alert_rule(client: FlaskClient, a: TenantCtx, subscription_id: str, secret: str) -> dict[str, Any]:
    """A's alert rule on its subscription (firing: a dead letter waits), with a webhook of its own."""
    from app.services.alert_eval import evaluate

    resp = client.post("/api/v1/alert-rules", headers=a.headers("manage"), json={
        "name": f"rule-{secret}", "kind": "dead_letters", "target": {"subscription": subscription_id},
        "threshold": 0, "for_s": 0, "notify": [{"webhook": f"{HOOK_URL}/alerts-{secret}"}]})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    with client.application.app_context():
        evaluate()
    return resp.get_json()


def _webhooks(client: FlaskClient, a: TenantCtx, stream: str, secret: str,
              event: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """A's subscription of ``stream``, a dead letter of it and a scheduled replay job."""
    resp = client.post("/api/v1/subscriptions", headers=a.headers("manage"), json={
        "stream": stream, "url": f"{HOOK_URL}/{secret}", "filter": f'data.secret == "{secret}"'})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    sub = resp.get_json()
    letter = add_delivery(client.application, sub["id"], event={**event, "specversion": "1.0", "source": "/a"})
    resp = client.post("/api/v1/replay-jobs", headers=a.headers("manage"),
                       json={"subscription": sub["id"], "cron": "0 3 * * *"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return sub, letter, resp.get_json()["id"]


def snapshot(client: FlaskClient, a: TenantCtx, world: World) -> dict[str, Any]:
    """What A sees of its own resources, to prove B changed nothing."""
    h = a.headers("all")
    keys = client.get("/api/v1/api-keys", headers=h).get_json()["items"]
    return {
        "stream": client.get(f"/api/v1/streams/{world.stream}", headers=h).get_json(),
        "events": client.get(f"/api/v1/streams/{world.stream}/events", headers=h).get_json()["items"],
        "group": client.get(f"/api/v1/streams/{world.stream}/groups/{world.group}", headers=h).get_json(),
        "keys": sorted((k["id"], k["revoked_at"]) for k in keys),
        "subscription": client.get(f"/api/v1/subscriptions/{world.subscription_id}", headers=h).get_json(),
        "dead_letter": client.get(f"/api/v1/dead-letters/{world.delivery_id}", headers=h).get_json(),
        "replay_jobs": client.get("/api/v1/replay-jobs", headers=h).get_json()["items"],
        "alert_rule": client.get(f"/api/v1/alert-rules/{world.rule_id}", headers=h).get_json(),
        "alerts": client.get("/api/v1/alerts", headers=h).get_json()["items"],
    }


@pytest.fixture(params=["api-key", "operator-jwt"])
def b_headers(request: pytest.FixtureRequest, client: FlaskClient, admin_token: str,
              other_tenant: TenantCtx) -> dict[str, str]:
    """Tenant B's credentials: its all-scopes key, or the JWT of an Operator of B alone."""
    if request.param == "api-key":
        return other_tenant.headers("all")
    username = f"b-op-{uuid.uuid4().hex[:8]}"
    resp = client.post("/api/v1/users", headers={"Authorization": f"Bearer {admin_token}"},
                       json={"username": username, "password": PASSWORD, "role": "Operator",
                             "tenants": [other_tenant.slug]})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return {"Authorization": f"Bearer {login(client, username, PASSWORD)}"}


def check_endpoint(client: FlaskClient, rule: Any, method: str, world: World,
                   b_headers: dict[str, str]) -> list[str]:
    """B calls one endpoint with A's names and ids; the problems found, if any."""
    where = f"{method} {rule.rule}"
    body_of = BODIES.get((method, rule.rule))
    body = body_of(world) if body_of else {}
    query = QUERIES[rule.rule](world) if method == "GET" and rule.rule in QUERIES else None
    path = fill(rule.rule, SAMPLES, world)
    resp = call(client, method, path, b_headers, body, query)
    text = resp.get_data(as_text=True)
    if resp.status_code >= 500:
        return [f"{where}: {resp.status_code} {text[:200]}"]
    sent = f"{path} {body} {query}"
    problems = [f"{where}: answer carries A's {found}" for found in [leaks(text, world.markers, sent)] if found]
    if rule.arguments:
        ghost = call(client, method, fill(rule.rule, GHOSTS, world), b_headers, body)
        # With a valid body the tenant check is all that can refuse; without one, validation may come first.
        allowed = {403, 404} if body_of or method not in WRITE_METHODS else {400, 403, 404, 415, 422}
        if resp.status_code not in allowed:
            problems.append(f"{where}: {resp.status_code} on A's resource (want {sorted(allowed)})")
        if (resp.status_code, _code(resp)) != (ghost.status_code, _code(ghost)):
            problems.append(f"{where}: A's resource answers {resp.status_code} {_code(resp)}, a missing one "
                            f"{ghost.status_code} {_code(ghost)} (existence leak)")
    elif (method, rule.rule) in EXPECTED:
        if resp.status_code not in EXPECTED[(method, rule.rule)]:
            problems.append(f"{where}: {resp.status_code}, want {EXPECTED[(method, rule.rule)]}: {text[:200]}")
    elif method == "GET":
        if resp.status_code != 200:
            problems.append(f"{where}: list answers {resp.status_code}: {text[:200]}")
        elif found := leaks(text, world.names, sent):
            problems.append(f"{where}: B's list shows A's {found}")
    elif resp.status_code not in {200, 201, 202, 204, 400, 403, 404, 409, 422}:
        problems.append(f"{where}: unexpected {resp.status_code}: {text[:200]}")
    return problems


def _code(resp: Any) -> str | None:
    body = resp.get_json(silent=True)
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def test_tenant_b_walks_every_endpoint_and_sees_nothing_of_a(app: Flask, client: FlaskClient, tenant: TenantCtx,
                                                               b_headers: dict[str, str]) -> None:
    world = build_world(client, tenant)
    before = snapshot(client, tenant, world)
    problems: list[str] = []
    endpoints = api_endpoints(app)
    for rule, method in endpoints:
        missing = sorted(set(rule.arguments) - set(SAMPLES))
        if missing:
            problems.append(f"{method} {rule.rule}: add SAMPLES and GHOSTS for {missing}")
        else:
            problems += check_endpoint(client, rule, method, world, b_headers)
    assert len(endpoints) >= 15, f"only {len(endpoints)} endpoints found: did the rule filter break?"
    assert not problems, "\n".join(problems)
    assert snapshot(client, tenant, world) == before, "B's walk changed A's resources"


def test_same_names_in_b_are_separate_resources(client: FlaskClient, tenant: TenantCtx,
                                                other_tenant: TenantCtx) -> None:
    world = build_world(client, tenant)
    b = other_tenant
    resp = client.post("/api/v1/streams", headers=b.headers("manage"), json={"name": world.stream, "partitions": 2})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    resp = client.post(f"/api/v1/streams/{world.stream}/events", headers=b.headers("publish"),
                       json={"type": "b.happened", "data": {"from": "b"}})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    b_event = resp.get_json()["results"][0]

    a_stream = client.get(f"/api/v1/streams/{world.stream}", headers=tenant.headers()).get_json()
    b_stream = client.get(f"/api/v1/streams/{world.stream}", headers=b.headers()).get_json()
    assert a_stream["id"] != b_stream["id"]
    assert a_stream["events"] == 3 and b_stream["events"] == 1
    b_events = client.get(f"/api/v1/streams/{world.stream}/events", headers=b.headers("consume")).get_json()
    assert [e["id"] for e in b_events["items"]] == [b_event["id"]]
    assert "a-secret" not in str(b_events)

    # The same group name in B starts from scratch and commits only B's offsets.
    fetched = client.post(f"/api/v1/streams/{world.stream}/groups/{world.group}/fetch", headers=b.headers("consume"),
                          json={"max": 100, "wait_ms": 0}).get_json()
    assert [e["id"] for e in fetched["items"]] == [b_event["id"]]
    resp = client.post(f"/api/v1/streams/{world.stream}/groups/{world.group}/commit", headers=b.headers("consume"),
                       json={"offsets": [{"partition": b_event["partition"], "offset": b_event["offset"] + 1}]})
    assert resp.status_code == 204
    a_group = client.get(f"/api/v1/streams/{world.stream}/groups/{world.group}", headers=tenant.headers()).get_json()
    b_group = client.get(f"/api/v1/streams/{world.stream}/groups/{world.group}", headers=b.headers()).get_json()
    assert a_group["lag"] == 2 and b_group["lag"] == 0
    b_groups = client.get("/api/v1/groups", headers=b.headers()).get_json()["items"]
    assert [(g["group"], g["lag"]) for g in b_groups] == [(world.group, 0)]

    # Deleting B's stream leaves A's intact.
    assert client.delete(f"/api/v1/streams/{world.stream}", headers=b.headers()).status_code == 204
    again = client.get(f"/api/v1/streams/{world.stream}", headers=tenant.headers()).get_json()
    assert again["id"] == a_stream["id"] and again["events"] == 3
    a_keys = {k["id"] for k in client.get("/api/v1/api-keys", headers=tenant.headers()).get_json()["items"]}
    b_keys = {k["id"] for k in client.get("/api/v1/api-keys", headers=b.headers()).get_json()["items"]}
    assert world.key_id in a_keys and not a_keys & b_keys
