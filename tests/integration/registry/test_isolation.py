"""Subjects, ids and settings are per tenant: tenant B sees nothing of tenant A's registry."""
from __future__ import annotations

import json

from flask.testing import FlaskClient

from tests.integration.registry.test_http_subjects import RECORD, call, error, new_subject, register
from tests.support.apps import TenantCtx


def test_tenant_b_sees_none_of_a(client: FlaskClient, tenant: TenantCtx, other_tenant: TenantCtx) -> None:
    a, b = tenant, other_tenant
    subject, user = new_subject(), new_subject()
    schema_id = register(client, a, subject, RECORD)["id"]
    order = {"type": "record", "name": "Order", "fields": [{"name": "item", "type": "Item"}]}
    register(client, a, user, order, references=[{"name": "Item", "subject": subject, "version": 1}])
    call(client, "PUT", f"/config/{subject}", a, {"compatibility": "NONE"})
    call(client, "PUT", f"/mode/{subject}", a, {"mode": "READONLY"})
    call(client, "PUT", "/config", a, {"compatibility": "FULL"})

    assert call(client, "GET", "/subjects?deleted=true", b).get_json(force=True) == []
    assert call(client, "GET", "/schemas?deleted=true", b).get_json(force=True) == []
    for path in (f"/schemas/ids/{schema_id}", f"/schemas/ids/{schema_id}/schema",
                 f"/schemas/ids/{schema_id}/subjects", f"/schemas/ids/{schema_id}/versions"):
        error(call(client, "GET", path, b), 404, 40403)
    for method, path in (("GET", f"/subjects/{subject}/versions"), ("GET", f"/subjects/{subject}/versions/1"),
                         ("GET", f"/subjects/{subject}/versions/latest/schema"),
                         ("GET", f"/subjects/{subject}/versions/1/referencedby"),
                         ("DELETE", f"/subjects/{subject}"), ("DELETE", f"/subjects/{subject}/versions/1"),
                         ("DELETE", f"/config/{subject}"), ("DELETE", f"/mode/{subject}")):
        error(call(client, method, path, b), 404, 40401)
    error(call(client, "POST", f"/subjects/{subject}", b, {"schema": json.dumps(RECORD)}), 404, 40401)
    error(call(client, "GET", f"/config/{subject}", b), 404, 40408)
    error(call(client, "GET", f"/mode/{subject}", b), 404, 40409)
    assert call(client, "GET", "/config", b).get_json(force=True) == {"compatibilityLevel": "BACKWARD"}
    # B may reuse the name: a subject of its own, with an id of its own; A's reference does not resolve for B.
    mine = register(client, b, subject, RECORD)
    assert mine["version"] == 1
    assert mine["id"] != schema_id
    error(call(client, "POST", f"/subjects/{new_subject()}/versions", b,
               {"schema": json.dumps(order), "references": [{"name": "Item", "subject": user, "version": 1}]}),
          422, 42201)
    # A still sees exactly its own.
    assert call(client, "GET", f"/subjects/{subject}/versions/1", a).get_json(force=True)["id"] == schema_id
    assert sorted(call(client, "GET", "/subjects", a).get_json(force=True)) == sorted([subject, user])
