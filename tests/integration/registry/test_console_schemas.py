"""The console's schema pages: subjects, versions, a side-by-side diff, the draft compatibility check."""
from __future__ import annotations

import json

from flask import Flask
from flask.testing import FlaskClient

from tests.integration.api.test_auth import PASSWORD, make_user
from tests.integration.registry.test_http_subjects import RECORD, RECORD_2, call, new_subject, register
from tests.support.apps import TenantCtx


def _console_login(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    resp = client.post("/login/", data={"username": username, "password": PASSWORD})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return client


def test_schema_pages_render_for_a_logged_in_viewer(app: Flask, client: FlaskClient, admin_token: str,
                                                     tenant: TenantCtx, other_tenant: TenantCtx) -> None:
    mine, theirs = new_subject(), new_subject()
    register(client, tenant, mine, RECORD)
    register(client, tenant, mine, RECORD_2)
    call(client, "PUT", f"/config/{mine}", tenant, {"compatibility": "FORWARD"})
    register(client, other_tenant, theirs, RECORD)
    browser = _console_login(app, make_user(client, admin_token, "Viewer", [tenant.slug]))

    listing = browser.get("/console/schemas/")
    assert listing.status_code == 200
    html = listing.get_data(as_text=True)
    assert mine in html and theirs not in html
    assert "FORWARD" in html and 'id="global-level">BACKWARD' in html

    page = browser.get(f"/console/schemas/subject/{mine}?version=1")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="versions-table"' in html and "Version 1" in html
    assert 'name="csrf_token"' in html  # the draft form is CSRF-protected
    assert "(set on the subject)" in html

    diff = browser.get(f"/console/schemas/subject/{mine}/diff?a=1&b=2")
    assert diff.status_code == 200
    html = diff.get_data(as_text=True)
    assert 'class="diff"' in html and "qty" in html and "diff_add" in html

    assert browser.get(f"/console/schemas/subject/{theirs}").status_code == 404
    assert browser.get(f"/console/schemas/subject/{mine}/diff?a=1&b=9").status_code == 404


def test_draft_compatibility_form(app: Flask, client: FlaskClient, admin_token: str, tenant: TenantCtx) -> None:
    subject = new_subject()
    register(client, tenant, subject, RECORD)
    browser = _console_login(app, make_user(client, admin_token, "Viewer", [tenant.slug]))
    url = f"/console/schemas/subject/{subject}"

    ok = browser.post(url, data={"schemaType": "AVRO", "schema": json.dumps(RECORD_2)})
    bad = browser.post(url, data={"schemaType": "AVRO",
                                  "schema": json.dumps({**RECORD, "fields": [{"name": "sku", "type": "int"}]})})
    broken = browser.post(url, data={"schemaType": "AVRO", "schema": "{oops"})

    assert ok.status_code == bad.status_code == broken.status_code == 200
    assert "Compatible: this draft can be registered" in ok.get_data(as_text=True)
    assert "Incompatible:" in bad.get_data(as_text=True)
    assert "Invalid draft (42201)" in broken.get_data(as_text=True)
    # Checking registers nothing.
    assert call(client, "GET", f"/subjects/{subject}/versions", tenant).get_json(force=True) == [1]


def test_schema_pages_need_a_login(app: Flask) -> None:
    resp = app.test_client().get("/console/schemas/")
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]
