"""Depth, cost, alias and token limits: refused before anything runs, with a code; introspection still works."""
from __future__ import annotations

from flask import Flask

from tests.integration.graphql.conftest import Api, codes


def test_a_query_deeper_than_the_limit_is_refused(gql_app: Flask, api: Api) -> None:
    assert gql_app.config["GRAPHQL_MAX_DEPTH"] == 6  # lowered for these tests: the schema's deepest path is 8
    deep = ("{ streams(limit: 1) { items { subscriptions(limit: 1) { items { deadLetters(limit: 1) { items {"
            " attempts { statusCode } } } } } } } }")
    body = api.graphql(deep)
    assert body["data"] is None and codes(body) == ["invalid_query"]
    assert "exceeds maximum operation depth of 6" in body["errors"][0]["message"]
    within = "{ subscriptions { items { deadLetters { items { attempts { statusCode } } } } } }"
    assert api.graphql(within)["data"] == {"subscriptions": {"items": []}}


def test_a_query_costlier_than_the_limit_is_refused_with_its_cost(gql_app: Flask, api: Api) -> None:
    max_cost = gql_app.config["GRAPHQL_MAX_COST"]
    api.stream()
    costly = "{ streams(limit: 1000) { items { groups(limit: 100) { items { group } } } } }"
    body = api.graphql(costly)
    assert body["data"] is None and codes(body) == ["query_too_costly"]
    details = body["errors"][0]["extensions"]["details"]
    assert details == {"cost": 1 + 1000 + 1000 * (1 + 100), "max_cost": max_cost}

    # The same shape within the budget runs.
    fine = api.graphql("{ streams(limit: 10) { items { groups(limit: 10) { items { group } } } } }")
    assert "errors" not in fine, fine


def test_cost_reads_limits_from_variables_and_their_defaults(api: Api) -> None:
    query = """query($n: Int = 5, $m: Int!) {
      streams(limit: $n) { items { events(limit: $m) { items { id } } } } }"""
    assert codes(api.graphql(query, {"n": 1000, "m": 1000})) == ["query_too_costly"]
    assert "errors" not in api.graphql(query, {"m": 100})  # n = 5 by default: 1 + 5 + 5 * (1 + 100)
    assert codes(api.graphql(query, {"m": 10_000})) == ["query_too_costly"]


def test_fragments_are_counted(api: Api) -> None:
    body = api.graphql("""
      query { a: streams(limit: 1000) { ...S } }
      fragment S on StreamPage { items { groups(limit: 1000) { items { group } } } }""")
    assert codes(body) == ["query_too_costly"]


def test_too_many_aliases_are_refused(gql_app: Flask, api: Api) -> None:
    n = gql_app.config["GRAPHQL_MAX_ALIASES"] + 1
    body = api.graphql("{ " + " ".join(f"a{i}: me {{ tenant }}" for i in range(n)) + " }")
    assert body["data"] is None and codes(body) == ["invalid_query"]


def test_full_introspection_passes_the_limits(api: Api) -> None:
    from graphql import get_introspection_query

    body = api.graphql(get_introspection_query(descriptions=True))
    assert "errors" not in body, body["errors"]
    names = {t["name"] for t in body["data"]["__schema"]["types"]}
    assert {"Stream", "Event", "ConsumerGroup", "DeadLetter", "ReplayJob", "EventBatch", "Long"} <= names
