"""GraphQL tests against a real server: a migrated app on PostgreSQL behind threaded Werkzeug, real clients.

HTTP goes through httpx (as curl would), WebSocket through ``gql`` with its websockets transport
(graphql-transport-ws), the REST API through httpx too: nothing is called in-process but the set-up.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from flask import Flask

from tests.support.apps import ADMIN_PASSWORD, TenantCtx, login, new_tenant
from tests.support.fixtures import app_on
from tests.support.live_server import live_server


@pytest.fixture(scope="session")
def gql_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One migrated app on its own PostgreSQL database (SQL event log) for the package.

    The depth limit is lowered below the schema's deepest path (8) so that a test can exceed it; open sockets'
    credentials are re-checked every 0.3 s (15 s by default).
    """
    yield from app_on("postgresql", tmp_path_factory, GRAPHQL_MAX_DEPTH=6, SOCKET_AUTH_RECHECK_S=0.3)


@pytest.fixture(scope="session")
def base_url(gql_app: Flask) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a real server around the app."""
    with live_server(gql_app) as url:
        yield url


@pytest.fixture(scope="session")
def admin_jwt(gql_app: Flask) -> str:
    """A JWT of user admin."""
    return login(gql_app.test_client(), "admin", ADMIN_PASSWORD)


@dataclass
class Api:
    """One tenant, acting over the server's REST API and /graphql."""

    url: str
    tenant: TenantCtx

    def rest(self, method: str, path: str, body: Any = None, scope: str = "all", status: int | None = None) -> Any:
        """Call /api/v1 as the tenant; check the status when given; the JSON answer (or None)."""
        resp = httpx.request(method, f"{self.url}/api/v1{path}", json=body, headers=self.tenant.headers(scope))
        if status is not None:
            assert resp.status_code == status, resp.text
        return resp.json() if resp.content else None

    def stream(self, partitions: int = 2) -> str:
        """A new stream of the tenant; its name."""
        name = f"s-{uuid.uuid4().hex[:8]}"
        self.rest("POST", "/streams", {"name": name, "partitions": partitions}, status=201)
        return name

    def publish(self, stream: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Publish over REST; the positions."""
        return self.rest("POST", f"/streams/{stream}/events", {"events": events}, scope="publish",
                         status=201)["results"]

    def graphql(self, query: str, variables: dict[str, Any] | None = None, scope: str | None = "all",
                headers: dict[str, str] | None = None) -> dict[str, Any]:
        """POST /graphql with the tenant's key of ``scope`` (None: no credentials); the JSON answer."""
        return post_graphql(self.url, query, variables,
                            headers if headers is not None else ({} if scope is None else self.tenant.headers(scope)))


def post_graphql(url: str, query: str, variables: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST a GraphQL operation as JSON; asserts the transport status is 200 and returns the body."""
    resp = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables}, headers=headers or {})
    assert resp.status_code == 200, resp.text
    return resp.json()


def codes(body: dict[str, Any]) -> list[str]:
    """The extensions.code of every error of an answer."""
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


@pytest.fixture
def api(gql_app: Flask, base_url: str, admin_jwt: str) -> Api:
    """A fresh tenant (keys for every scope) on the served app."""
    return Api(base_url, new_tenant(gql_app.test_client(), admin_jwt))


@pytest.fixture
def other(gql_app: Flask, base_url: str, admin_jwt: str) -> Api:
    """A second fresh tenant, for isolation checks."""
    return Api(base_url, new_tenant(gql_app.test_client(), admin_jwt))
