"""The first console page: a logged-in user sees their tenant's streams, and only theirs."""
from __future__ import annotations

import uuid

from flask import Flask
from flask.testing import FlaskClient

from tests.integration.api.test_auth import PASSWORD, make_user
from tests.support.apps import TenantCtx


def _console_login(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    resp = client.post("/login/", data={"username": username, "password": PASSWORD})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return client


def test_streams_page_lists_the_tenants_streams(app: Flask, client: FlaskClient, admin_token: str,
                                                tenant: TenantCtx, other_tenant: TenantCtx) -> None:
    mine, theirs = f"mine-{uuid.uuid4().hex[:6]}", f"theirs-{uuid.uuid4().hex[:6]}"
    assert client.post("/api/v1/streams", json={"name": mine, "partitions": 2},
                       headers=tenant.headers()).status_code == 201
    assert client.post("/api/v1/streams", json={"name": theirs}, headers=other_tenant.headers()).status_code == 201
    client.post(f"/api/v1/streams/{mine}/events", json={"type": "t.x", "data": {"n": 1}},
                headers=tenant.headers("publish"))
    viewer = make_user(client, admin_token, "Viewer", [tenant.slug])

    page = _console_login(app, viewer).get("/console/streams/")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert mine in html
    assert theirs not in html
    assert f"tenant {tenant.slug}" in html


def test_streams_page_needs_a_login(app: Flask) -> None:
    resp = app.test_client().get("/console/streams/")
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]
