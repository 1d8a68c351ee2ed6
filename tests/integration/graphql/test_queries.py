"""Queries over HTTP: every type, nested groups with lag, pagination, auth, tenant isolation, bad documents."""
from __future__ import annotations

import httpx
import pytest
from flask import Flask

from tests.integration.api.test_auth import PASSWORD, make_user
from tests.integration.graphql.conftest import Api, codes, post_graphql
from tests.support.apps import login
from tests.support.webhooks import add_delivery, make_subscription, recording_celery

STREAM_TREE = """
query Tree($name: String!) {
  me { tenant permissions }
  stream(name: $name) {
    name partitionCount eventCount
    partitions { partition low high }
    events(limit: 10) { items { id type key data partition offset } next }
    groups { items { group stream lag partitions { partition committed end lag } } next }
  }
}
"""


def test_stream_with_partitions_events_and_groups_with_lag(api: Api) -> None:
    stream = api.stream(partitions=2)
    # One key: all five in one partition; the group commits past the first of them.
    first = api.publish(stream, [{"type": "order.created", "key": "k1", "data": {"n": i}} for i in range(5)])[0]
    api.rest("POST", f"/streams/{stream}/groups/billing/commit",
             {"offsets": [{"partition": first["partition"], "offset": first["offset"] + 1}]}, status=204)

    body = api.graphql(STREAM_TREE, {"name": stream})

    assert "errors" not in body, body
    assert body["data"]["me"]["tenant"] == api.tenant.slug
    got = body["data"]["stream"]
    rest = api.rest("GET", f"/streams/{stream}", status=200)
    assert (got["name"], got["partitionCount"], got["eventCount"]) == (stream, 2, 5)
    assert got["partitions"] == rest["partitions"]
    assert sorted(e["data"]["n"] for e in got["events"]["items"]) == [0, 1, 2, 3, 4]
    assert {e["key"] for e in got["events"]["items"]} == {"k1"}
    [group] = got["groups"]["items"]
    rest_group = api.rest("GET", f"/streams/{stream}/groups/billing", status=200)
    assert group == rest_group  # the same view, field for field
    assert group["lag"] == 4 and group["group"] == "billing"


def test_events_pages_and_filters_like_rest(api: Api) -> None:
    stream = api.stream(partitions=1)
    api.publish(stream, [{"type": "order.created" if i % 2 else "order.paid", "data": {"i": i}} for i in range(7)])
    query = """query($s: String!, $c: String) {
      events(stream: $s, limit: 2, type: "order.created", cursor: $c) { items { offset type } next } }"""
    seen, cursor = [], None
    while True:
        page = api.graphql(query, {"s": stream, "c": cursor})["data"]["events"]
        seen += [(e["offset"], e["type"]) for e in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [(1, "order.created"), (3, "order.created"), (5, "order.created")]

    one = api.graphql("query($s: String!) { event(stream: $s, partition: 0, offset: 3) { offset data } }",
                      {"s": stream})
    assert one["data"]["event"] == {"offset": 3, "data": {"i": 3}}
    missing = api.graphql("query($s: String!) { event(stream: $s, partition: 0, offset: 99) { offset } }",
                          {"s": stream})
    assert missing["data"]["event"] is None and codes(missing) == ["event_not_found"]


def test_streams_page_with_a_cursor(api: Api) -> None:
    names = sorted(api.stream() for _ in range(3))
    first = api.graphql("{ streams(limit: 2) { items { name } next } }")["data"]["streams"]
    second = api.graphql("query($c: String) { streams(limit: 2, cursor: $c) { items { name } next } }",
                         {"c": first["next"]})["data"]["streams"]
    assert [s["name"] for s in first["items"] + second["items"]] == names and second["next"] is None
    assert codes(api.graphql("{ streams(limit: 0) { next } }")) == ["invalid_parameter"]


def test_subscriptions_dead_letters_and_jobs(gql_app: Flask, api: Api) -> None:
    client = gql_app.test_client()
    sub = make_subscription(client, api.tenant, event_types=["order.*"])
    letter = add_delivery(gql_app, sub["id"])

    body = api.graphql("""query($id: ID!, $dl: ID!) {
      subscriptions { items { id stream url eventTypes status } }
      subscription(id: $id) { id deadLetters { items { id } } }
      deadLetters(subscription: $id) { items { id eventType attemptCount deadAt } next }
      deadLetter(id: $dl) { id event attempts { statusCode error } }
      replayJobs { items { id } }
    }""", {"id": sub["id"], "dl": letter})

    assert "errors" not in body, body
    data = body["data"]
    assert data["subscriptions"]["items"] == [{"id": sub["id"], "stream": sub["stream"], "url": sub["url"],
                                               "eventTypes": ["order.*"], "status": "active"}]
    assert data["subscription"]["deadLetters"]["items"] == [{"id": letter}]
    [dead] = data["deadLetters"]["items"]
    assert (dead["id"], dead["eventType"], dead["attemptCount"]) == (letter, "order.created", 2) and dead["deadAt"]
    assert data["deadLetter"]["event"]["data"] == {"amount": 150}
    assert data["deadLetter"]["attempts"] == [{"statusCode": 500, "error": None},
                                              {"statusCode": None, "error": "connection refused"}]
    assert data["replayJobs"]["items"] == []


def test_another_tenants_resources_are_not_found(gql_app: Flask, api: Api, other: Api) -> None:
    theirs = other.stream()
    other.publish(theirs, [{"type": "secret.thing", "data": {"secret": "only-theirs-zq9"}}])
    their_sub = make_subscription(gql_app.test_client(), other.tenant)
    their_letter = add_delivery(gql_app, their_sub["id"])

    body = api.graphql("""query($s: String!, $sub: ID!, $dl: ID!) {
      stream(name: $s) { name }
      group(stream: $s, group: "g") { lag }
      subscription(id: $sub) { id }
      deadLetter(id: $dl) { id }
    }""", {"s": theirs, "sub": their_sub["id"], "dl": their_letter})
    assert body["data"] == {"stream": None, "group": None, "subscription": None, "deadLetter": None}
    assert sorted(codes(body)) == ["dead_letter_not_found", "stream_not_found", "stream_not_found",
                                   "subscription_not_found"]
    events = api.graphql("query($s: String!) { events(stream: $s) { items { data } } }", {"s": theirs})
    assert events["data"] is None and codes(events) == ["stream_not_found"]
    lists = api.graphql("{ streams { items { name } } deadLetters { items { id } } subscriptions { items { id } } }")
    assert lists["data"] == {"streams": {"items": []}, "deadLetters": {"items": []}, "subscriptions": {"items": []}}
    assert "only-theirs-zq9" not in str(body) + str(events) + str(lists)


@pytest.mark.parametrize("headers, code", [
    ({}, "unauthorized"),
    ({"Authorization": "Bearer ebk_not-a-key"}, "invalid_credentials"),
    ({"Authorization": "Bearer not.a.jwt"}, "invalid_credentials"),
    ({"Authorization": "Basic bm9wZTpub3BlOg=="}, "invalid_credentials"),
])
def test_without_valid_credentials_every_field_is_refused(base_url: str, headers: dict[str, str], code: str) -> None:
    body = post_graphql(base_url, "{ streams { items { name } } me { tenant } }", headers=headers)
    assert body["data"] is None
    assert set(codes(body)) == {code}
    assert all(e["extensions"]["status"] == 401 for e in body["errors"])


def test_jwt_basic_auth_and_introspection(gql_app: Flask, api: Api, admin_jwt: str) -> None:
    username = make_user(gql_app.test_client(), admin_jwt, "Viewer", [api.tenant.slug])
    token = login(gql_app.test_client(), username, PASSWORD)
    viewer = post_graphql(api.url, "{ me { tenant actor permissions } }", headers={"Authorization": f"Bearer {token}"})
    assert viewer["data"]["me"] == {"tenant": api.tenant.slug, "actor": username, "permissions": ["read"]}
    # An admin names the tenant with X-Tenant, exactly as over REST.
    as_admin = post_graphql(api.url, "{ me { tenant } }",
                            headers={"Authorization": f"Bearer {admin_jwt}", "X-Tenant": api.tenant.slug})
    assert as_admin["data"]["me"]["tenant"] == api.tenant.slug
    # HTTP Basic with the API key as the password, as Kafka-ecosystem clients send it.
    basic = httpx.post(f"{api.url}/graphql", json={"query": "{ me { tenant } }"},
                       auth=("key", api.tenant.keys["consume"])).json()
    assert basic["data"]["me"]["tenant"] == api.tenant.slug
    # Introspection needs no credentials: the schema is public documentation.
    schema = post_graphql(api.url, "{ __schema { queryType { name } subscriptionType { name } } }")
    assert schema["data"]["__schema"] == {"queryType": {"name": "Query"}, "subscriptionType": {"name": "Subscription"}}
    # A browser gets GraphiQL.
    ide = httpx.get(f"{api.url}/graphql", headers={"Accept": "text/html"})
    assert ide.status_code == 200 and "graphiql" in ide.text.lower()
    # GET works for queries (not for mutations).
    got = httpx.get(f"{api.url}/graphql", params={"query": "{ me { tenant } }"}, headers=api.tenant.headers())
    assert got.json()["data"]["me"]["tenant"] == api.tenant.slug


def test_graphiql_is_served_without_a_cdn(api: Api) -> None:
    # Every script and stylesheet of the GraphiQL page comes from this server (no internet needed), and each file
    # matches the integrity hash the page gives for it, so a browser runs it.
    import base64
    import hashlib
    import re

    page = httpx.get(f"{api.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "unpkg.com" not in page.text and "https://" not in re.sub(r"<script>.*?</script>", "", page.text, flags=re.S)
    assets = re.findall(r'(?:src|href)="(/static/vendor/graphiql/[^"]+)"\s+integrity="([^"]+)"', page.text)
    assert len(assets) == 7
    for path, integrity in assets:
        got = httpx.get(f"{api.url}{path}")
        assert got.status_code == 200, path
        assert integrity == "sha384-" + base64.b64encode(hashlib.sha384(got.content).digest()).decode(), path


def test_the_console_session_cookie_is_not_a_credential(gql_app: Flask, api: Api, admin_jwt: str) -> None:
    username = make_user(gql_app.test_client(), admin_jwt, "Operator", [api.tenant.slug])
    with httpx.Client(base_url=api.url) as browser:
        assert browser.post("/login/", data={"username": username, "password": PASSWORD}).status_code == 302
        assert browser.get("/api/v1/streams").status_code == 401  # like REST
        body = browser.post("/graphql", json={"query": "{ me { tenant } }"}).json()
    assert codes(body) == ["unauthorized"]


@pytest.mark.parametrize("payload, status, code", [
    ({"query": "{ streams { items { name } "}, 200, "malformed_query"),
    ({"query": "{ streams { nope } }"}, 200, "invalid_query"),
    ({"query": "query { me { tenant } } query { me { actor } }"}, 200, "invalid_query"),
    ({"query": "{ me { tenant } }", "variables": "not-an-object"}, 400, "bad_request"),
    ({"query": 42}, 400, "bad_request"),
    ({}, 400, "bad_request"),
])
def test_malformed_documents_are_errors_with_codes(api: Api, payload: dict, status: int, code: str) -> None:
    resp = httpx.post(f"{api.url}/graphql", json=payload, headers=api.tenant.headers())
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert codes(body) and set(codes(body)) == {code}
    assert body.get("data") is None


def test_malformed_json_and_mutations_over_get_are_refused(api: Api) -> None:
    bad_json = httpx.post(f"{api.url}/graphql", content=b"{nope", headers={**api.tenant.headers(),
                                                                          "Content-Type": "application/json"})
    assert bad_json.status_code == 400 and codes(bad_json.json()) == ["bad_request"]
    over_get = httpx.get(f"{api.url}/graphql", headers=api.tenant.headers(),
                         params={"query": 'mutation { publish(stream: "x", events: []) { results { offset } } }'})
    assert over_get.status_code == 400 and codes(over_get.json()) == ["bad_request"]


def _every_field(schema: object, type_name: str, depth: int = 2) -> str:
    """A selection of every field of ``type_name`` that takes no required argument (objects ``depth`` deep)."""
    from graphql import GraphQLObjectType, get_named_type, is_leaf_type, is_non_null_type

    gql_type = schema.get_type(type_name)  # type: ignore[attr-defined]
    assert isinstance(gql_type, GraphQLObjectType)
    parts = []
    for name, field in gql_type.fields.items():
        if any(is_non_null_type(a.type) and a.default_value is None for a in field.args.values()):
            continue
        named = get_named_type(field.type)
        if is_leaf_type(named):
            parts.append(name)
        elif depth > 0:
            parts.append(f"{name} {_every_field(schema, named.name, depth - 1)}")
    return "{ " + " ".join(parts) + " }"


def test_every_field_of_every_type_resolves(gql_app: Flask, api: Api) -> None:
    schema = gql_app.extensions["graphql_schema"]._schema
    sub = make_subscription(gql_app.test_client(), api.tenant)
    letter = add_delivery(gql_app, sub["id"])
    stream = sub["stream"]
    api.publish(stream, [{"type": "t", "key": "k", "data": {"x": 1}, "subject": "s", "headers": {"h": "v"}}])
    api.rest("POST", f"/streams/{stream}/groups/g/commit", {"offsets": [{"partition": 0, "offset": 0}]}, status=204)
    with recording_celery(gql_app):
        job = api.rest("POST", "/dead-letters/replay", {"ids": [letter]}, scope="manage", status=202)["job_id"]

    body = api.graphql(f"""query($s: String!, $sub: ID!, $dl: ID!, $job: ID!) {{
      me {_every_field(schema, "Viewer")}
      stream(name: $s) {_every_field(schema, "Stream")}
      subscription(id: $sub) {_every_field(schema, "WebhookSubscription")}
      deadLetter(id: $dl) {_every_field(schema, "DeadLetter")}
      replayJob(id: $job) {_every_field(schema, "ReplayJob")}
      group(stream: $s, group: "g") {_every_field(schema, "ConsumerGroup")}
    }}""", {"s": stream, "sub": sub["id"], "dl": letter, "job": job})

    assert "errors" not in body, body["errors"]
    data = body["data"]
    rest_stream = api.rest("GET", f"/streams/{stream}", status=200)
    assert data["stream"]["id"] == rest_stream["id"] and data["stream"]["createdAt"].endswith("+00:00")
    [event] = [e for e in data["stream"]["events"]["items"] if e["type"] == "t"]
    assert (event["subject"], event["headers"], event["specversion"]) == ("s", {"h": "v"}, "1.0")
    assert data["subscription"]["id"] == sub["id"] and data["deadLetter"]["id"] == letter
    assert data["replayJob"]["id"] == job and data["group"]["group"] == "g"
