"""Mutations over HTTP: publish and replay, with the REST API's permissions, validation and tenant rules."""
from __future__ import annotations

import pytest
from flask import Flask

from tests.integration.api.test_auth import PASSWORD, make_user
from tests.integration.graphql.conftest import Api, codes, post_graphql
from tests.support.apps import login
from tests.support.webhooks import add_delivery, make_subscription, recording_celery

PUBLISH = """mutation Publish($s: String!, $events: [EventInput!]!, $key: String) {
  publish(stream: $s, events: $events, idempotencyKey: $key) { results { id partition offset } }
}"""
REPLAY = """mutation Replay($ids: [ID!], $sub: ID, $filter: String) {
  replayDeadLetters(ids: $ids, subscription: $sub, filter: $filter) {
    job { id kind status subscription selector progress { total done } } enqueued
  }
}"""


def test_publish_appends_events_that_rest_reads_back(api: Api) -> None:
    stream = api.stream(partitions=1)
    events = [{"type": "order.created", "key": "c-1", "data": {"amount": 120}, "id": "evt-1", "source": "/shop"},
              {"type": "order.paid", "data": "text data", "headers": {"trace": "abc"}}]
    body = api.graphql(PUBLISH, {"s": stream, "events": events}, scope="publish")
    assert "errors" not in body, body
    results = body["data"]["publish"]["results"]
    assert [(r["partition"], r["offset"]) for r in results] == [(0, 0), (0, 1)] and results[0]["id"] == "evt-1"

    stored = api.rest("GET", f"/streams/{stream}/events", status=200)["items"]
    assert [(e["id"], e["type"], e["key"], e["data"], e["source"]) for e in stored][0] == (
        "evt-1", "order.created", "c-1", {"amount": 120}, "/shop")
    assert stored[1]["data"] == "text data" and stored[1]["headers"] == {"trace": "abc"}


def test_publish_is_all_or_nothing_and_idempotent(api: Api) -> None:
    stream = api.stream(partitions=1)
    bad = api.graphql(PUBLISH, {"s": stream, "events": [{"type": "ok", "data": 1}, {"type": "", "data": 2}]})
    assert bad["data"] is None and codes(bad) == ["invalid_event"]
    assert bad["errors"][0]["extensions"]["details"]["index"] == 1
    assert api.rest("GET", f"/streams/{stream}/events", status=200)["items"] == []

    first = api.graphql(PUBLISH, {"s": stream, "events": [{"type": "once", "data": 1}], "key": "k-1"})
    again = api.graphql(PUBLISH, {"s": stream, "events": [{"type": "once", "data": 1}], "key": "k-1"})
    assert first["data"] == again["data"]
    assert len(api.rest("GET", f"/streams/{stream}/events", status=200)["items"]) == 1

    missing = api.graphql(PUBLISH, {"s": "no-such-stream", "events": [{"type": "x", "data": 1}]})
    assert codes(missing) == ["stream_not_found"]


def test_viewers_and_consume_only_keys_cannot_publish(gql_app: Flask, api: Api, admin_jwt: str) -> None:
    stream = api.stream()
    variables = {"s": stream, "events": [{"type": "x", "data": 1}]}
    consume_only = api.graphql(PUBLISH, variables, scope="consume")
    assert consume_only["data"] is None and codes(consume_only) == ["forbidden"]
    assert consume_only["errors"][0]["extensions"]["status"] == 403

    viewer = login(gql_app.test_client(), make_user(gql_app.test_client(), admin_jwt, "Viewer", [api.tenant.slug]),
                   PASSWORD)
    as_viewer = post_graphql(api.url, PUBLISH, variables, headers={"Authorization": f"Bearer {viewer}"})
    assert codes(as_viewer) == ["forbidden"]
    operator = login(gql_app.test_client(),
                     make_user(gql_app.test_client(), admin_jwt, "Operator", [api.tenant.slug]), PASSWORD)
    as_operator = post_graphql(api.url, PUBLISH, variables, headers={"Authorization": f"Bearer {operator}"})
    assert "errors" not in as_operator, as_operator
    assert len(api.rest("GET", f"/streams/{stream}/events", status=200)["items"]) == 1  # only the Operator's

    unauthenticated = api.graphql(PUBLISH, variables, scope=None)
    assert codes(unauthenticated) == ["unauthorized"]


def test_cannot_publish_into_another_tenants_stream(api: Api, other: Api) -> None:
    theirs = other.stream()
    body = api.graphql(PUBLISH, {"s": theirs, "events": [{"type": "x", "data": 1}]})
    assert codes(body) == ["stream_not_found"]
    assert other.rest("GET", f"/streams/{theirs}/events", status=200)["items"] == []


def test_replaying_a_dead_letter_makes_a_job(gql_app: Flask, api: Api) -> None:
    sub = make_subscription(gql_app.test_client(), api.tenant)
    letter = add_delivery(gql_app, sub["id"])
    with recording_celery(gql_app) as celery:
        body = api.graphql(REPLAY, {"ids": [letter]}, scope="manage")
    assert "errors" not in body, body
    job = body["data"]["replayDeadLetters"]["job"]
    assert body["data"]["replayDeadLetters"]["enqueued"] is True
    assert (job["kind"], job["status"], job["subscription"]) == ("dead_letters", "queued", sub["id"])
    assert job["selector"] == {"ids": [letter]} and job["progress"] == {"total": 1, "done": 0}
    assert celery.sent == [("replay.run_job", [job["id"]])]
    # The job is the REST API's job.
    assert api.rest("GET", f"/replay-jobs/{job['id']}", status=200)["selector"] == {"ids": [letter]}
    shown = api.graphql("query($id: ID!) { replayJob(id: $id) { id status } }", {"id": job["id"]})
    assert shown["data"]["replayJob"] == {"id": job["id"], "status": "queued"}

    # By subscription and CEL filter: a window job.
    with recording_celery(gql_app):
        window = api.graphql(REPLAY, {"sub": sub["id"], "filter": "data.amount > 100"})
    assert window["data"]["replayDeadLetters"]["job"]["selector"]["filter"] == "data.amount > 100"


@pytest.mark.parametrize("variables, code", [
    ({"ids": ["not-a-dead-letter"]}, "dead_letter_not_found"),
    ({"filter": "data.amount >"}, "invalid_filter"),
    ({"ids": ["x"], "sub": "y"}, "unknown_field"),
])
def test_replay_refusals_carry_the_rest_codes(gql_app: Flask, api: Api, variables: dict, code: str) -> None:
    with recording_celery(gql_app) as celery:
        body = api.graphql(REPLAY, variables)
    assert body["data"] is None and codes(body) == [code]
    assert celery.sent == []


def test_replay_needs_manage_and_the_tenants_own_letters(gql_app: Flask, api: Api, other: Api) -> None:
    mine = add_delivery(gql_app, make_subscription(gql_app.test_client(), api.tenant)["id"])
    theirs = add_delivery(gql_app, make_subscription(gql_app.test_client(), other.tenant)["id"])
    with recording_celery(gql_app) as celery:
        assert codes(api.graphql(REPLAY, {"ids": [mine]}, scope="publish")) == ["forbidden"]
        assert codes(api.graphql(REPLAY, {"ids": [theirs]})) == ["dead_letter_not_found"]
    assert celery.sent == []
