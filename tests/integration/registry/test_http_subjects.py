"""Raw HTTP: subjects, versions and schemas by id, with Confluent's status codes, error codes and content types."""
from __future__ import annotations

import json
import uuid
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.integration.registry.conftest import V1
from tests.support.apps import TenantCtx

RECORD = {"type": "record", "name": "Item", "fields": [{"name": "sku", "type": "string"}]}
RECORD_2 = {**RECORD, "fields": [*RECORD["fields"], {"name": "qty", "type": "int", "default": 1}]}


def call(client: FlaskClient, method: str, path: str, tenant: TenantCtx | None, body: Any = None,
         scope: str = "all", content_type: str = V1, **headers: str) -> TestResponse:
    """A registry request as Confluent clients make it (v1+json body, API key)."""
    hdrs = dict(tenant.headers(scope)) if tenant is not None else {}
    hdrs.update(headers)
    data = None if body is None else (body if isinstance(body, (str, bytes)) else json.dumps(body))
    return client.open(f"/registry{path}", method=method, data=data, headers=hdrs,
                       content_type=content_type if data is not None else None)


def error(resp: TestResponse, status: int, code: int) -> str:
    """Assert a Confluent error body; return its message."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == V1
    body = resp.get_json(force=True)
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == code, body
    return body["message"]


def register(client: FlaskClient, tenant: TenantCtx, subject: str, schema: dict, **extra: Any) -> dict[str, Any]:
    """Register an Avro schema; returns the response body."""
    resp = call(client, "POST", f"/subjects/{subject}/versions", tenant, {"schema": json.dumps(schema), **extra})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json(force=True)


def new_subject() -> str:
    return f"items-{uuid.uuid4().hex[:8]}"


def test_register_list_get_and_content_types(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    resp = call(client, "POST", f"/subjects/{subject}/versions", tenant,
                {"schema": json.dumps(RECORD), "schemaType": "AVRO", "metadata": None, "ruleSet": None,
                 "somethingNew": {"x": 1}})  # unknown fields are ignored
    assert resp.status_code == 200
    assert resp.mimetype == V1
    first = resp.get_json(force=True)["id"]
    second = register(client, tenant, subject, RECORD_2, references=[])["id"]

    assert call(client, "GET", f"/subjects/{subject}/versions", tenant).get_json(force=True) == [1, 2]
    for version in ("2", "latest", "-1"):
        got = call(client, "GET", f"/subjects/{subject}/versions/{version}", tenant).get_json(force=True)
        assert got == {"subject": subject, "version": 2, "id": second, "schema": json.dumps(RECORD_2)}
    raw = call(client, "GET", f"/subjects/{subject}/versions/1/schema", tenant)
    assert json.loads(raw.get_data(as_text=True)) == RECORD
    assert call(client, "GET", f"/schemas/ids/{first}", tenant).get_json(force=True) == {"schema": json.dumps(RECORD)}
    assert json.loads(call(client, "GET", f"/schemas/ids/{first}/schema", tenant).get_data(as_text=True)) == RECORD
    assert call(client, "GET", f"/schemas/ids/{second}/subjects", tenant).get_json(force=True) == [subject]
    assert call(client, "GET", f"/schemas/ids/{second}/versions", tenant).get_json(force=True) == [
        {"subject": subject, "version": 2}]
    listed = call(client, "GET", f"/schemas?subjectPrefix={subject}&latestOnly=true", tenant).get_json(force=True)
    assert [(s["subject"], s["version"]) for s in listed] == [(subject, 2)]
    assert call(client, "GET", "/schemas/types", tenant).get_json(force=True)[:2] == ["AVRO", "JSON"]
    # Plain JSON in and out works as well; Accept picks the response type.
    plain = call(client, "GET", f"/subjects/{subject}/versions", tenant, Accept="application/json")
    assert plain.mimetype == "application/json"
    resp = call(client, "POST", f"/subjects/{subject}", tenant, {"schema": json.dumps(RECORD)},
                content_type="application/json")
    assert resp.get_json(force=True) == {"subject": subject, "version": 1, "id": first, "schema": json.dumps(RECORD)}


def test_subjects_list_with_prefix_and_deleted(client: FlaskClient, tenant: TenantCtx) -> None:
    live, gone = new_subject(), new_subject()
    register(client, tenant, live, RECORD)
    register(client, tenant, gone, RECORD)
    assert call(client, "DELETE", f"/subjects/{gone}", tenant).get_json(force=True) == [1]

    assert call(client, "GET", "/subjects", tenant).get_json(force=True) == [live]
    assert sorted(call(client, "GET", "/subjects?deleted=true", tenant).get_json(force=True)) == sorted([live, gone])
    assert call(client, "GET", "/subjects?deletedOnly=true", tenant).get_json(force=True) == [gone]
    assert call(client, "GET", f"/subjects?subjectPrefix={live[:10]}", tenant).get_json(force=True) == [live]
    assert call(client, "GET", "/subjects?subjectPrefix=zzz", tenant).get_json(force=True) == []


def test_dedup_returns_the_same_id_across_subjects(client: FlaskClient, tenant: TenantCtx) -> None:
    a, b = new_subject(), new_subject()
    first = register(client, tenant, a, RECORD)
    same = register(client, tenant, a, {"fields": RECORD["fields"], "name": "Item", "type": "record"})
    other = register(client, tenant, b, RECORD)
    assert first == same == {"id": first["id"], "version": 1}
    assert other["id"] == first["id"]
    assert sorted(call(client, "GET", f"/schemas/ids/{first['id']}/subjects", tenant).get_json(force=True)) == sorted(
        [a, b])


def test_lookup_errors(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    error(call(client, "POST", f"/subjects/{subject}", tenant, {"schema": json.dumps(RECORD)}), 404, 40401)
    register(client, tenant, subject, RECORD)
    error(call(client, "POST", f"/subjects/{subject}", tenant, {"schema": json.dumps(RECORD_2)}), 404, 40403)
    error(call(client, "POST", f"/subjects/{subject}", tenant, {"schema": "{not json"}), 422, 42201)
    # A soft-deleted version is found only with deleted=true.
    call(client, "DELETE", f"/subjects/{subject}/versions/1", tenant)
    error(call(client, "POST", f"/subjects/{subject}", tenant, {"schema": json.dumps(RECORD)}), 404, 40401)
    found = call(client, "POST", f"/subjects/{subject}?deleted=true", tenant, {"schema": json.dumps(RECORD)})
    assert found.get_json(force=True)["version"] == 1


def test_version_errors(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    error(call(client, "GET", f"/subjects/{subject}/versions", tenant), 404, 40401)
    error(call(client, "GET", f"/subjects/{subject}/versions/1", tenant), 404, 40401)
    register(client, tenant, subject, RECORD)
    error(call(client, "GET", f"/subjects/{subject}/versions/7", tenant), 404, 40402)
    for bad in ("0", "abc", "-2", "2147483648"):
        error(call(client, "GET", f"/subjects/{subject}/versions/{bad}", tenant), 422, 42202)
    error(call(client, "GET", "/schemas/ids/999999999", tenant), 404, 40403)
    error(call(client, "GET", "/schemas/ids/999999999/versions", tenant), 404, 40403)


def test_invalid_schemas_are_42201(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    for body in ({"schema": '{"type": "record", "name": "X"}'},  # no fields
                 {"schema": "not json"},
                 {},
                 {"schema": 42},
                 {"schema": json.dumps({"type": "object", "properties": 3}), "schemaType": "JSON"},
                 {"schema": json.dumps(RECORD), "schemaType": "XML"},
                 {"schema": json.dumps(RECORD), "references": [{"name": "x", "subject": "missing", "version": 1}]}):
        error(call(client, "POST", f"/subjects/{subject}/versions", tenant, body), 422, 42201)


def test_incompatible_registration_is_409(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    register(client, tenant, subject, RECORD)
    breaking = {**RECORD, "fields": [{"name": "sku", "type": "int"}]}
    message = error(call(client, "POST", f"/subjects/{subject}/versions", tenant, {"schema": json.dumps(breaking)}),
                    409, 409)
    assert "incompatible" in message


def test_soft_then_permanent_delete_of_versions(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    register(client, tenant, subject, RECORD)
    register(client, tenant, subject, RECORD_2)

    error(call(client, "DELETE", f"/subjects/{subject}/versions/2?permanent=true", tenant), 404, 40407)
    assert call(client, "DELETE", f"/subjects/{subject}/versions/latest", tenant).get_json(force=True) == 2
    error(call(client, "DELETE", f"/subjects/{subject}/versions/2", tenant), 404, 40406)
    error(call(client, "GET", f"/subjects/{subject}/versions/2", tenant), 404, 40402)
    assert call(client, "GET", f"/subjects/{subject}/versions/2?deleted=true", tenant).status_code == 200
    assert call(client, "GET", f"/subjects/{subject}/versions?deleted=true", tenant).get_json(force=True) == [1, 2]
    assert call(client, "GET", f"/subjects/{subject}/versions?deletedOnly=true", tenant).get_json(force=True) == [2]
    assert call(client, "DELETE", f"/subjects/{subject}/versions/2?permanent=true", tenant).get_json(force=True) == 2
    error(call(client, "GET", f"/subjects/{subject}/versions/2?deleted=true", tenant), 404, 40402)
    # A permanently deleted version number is free again (as in Confluent); the id is a new one.
    assert register(client, tenant, subject, RECORD_2)["version"] == 2


def test_soft_then_permanent_delete_of_subjects(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    schema_id = register(client, tenant, subject, RECORD)["id"]
    error(call(client, "DELETE", f"/subjects/{new_subject()}", tenant), 404, 40401)
    error(call(client, "DELETE", f"/subjects/{subject}?permanent=true", tenant), 404, 40405)
    assert call(client, "DELETE", f"/subjects/{subject}", tenant).get_json(force=True) == [1]
    error(call(client, "DELETE", f"/subjects/{subject}", tenant), 404, 40404)
    # Soft-deleted schemas still serve deserializers by id.
    assert call(client, "GET", f"/schemas/ids/{schema_id}", tenant).status_code == 200
    assert call(client, "DELETE", f"/subjects/{subject}?permanent=true", tenant).get_json(force=True) == [1]
    error(call(client, "GET", f"/schemas/ids/{schema_id}", tenant), 404, 40403)
    error(call(client, "DELETE", f"/subjects/{subject}", tenant), 404, 40401)
    again = register(client, tenant, subject, RECORD)
    assert again["version"] == 1
    assert again["id"] != schema_id  # ids are never reused: old Kafka records cannot decode with another schema


def test_references_and_referencedby(client: FlaskClient, tenant: TenantCtx) -> None:
    base, user = new_subject(), new_subject()
    item_id = register(client, tenant, base, RECORD)["id"]
    order = {"type": "record", "name": "Order", "fields": [{"name": "item", "type": "Item"}]}
    refs = [{"name": "Item", "subject": base, "version": 1}]
    order_id = register(client, tenant, user, order, references=refs)["id"]

    got = call(client, "GET", f"/schemas/ids/{order_id}", tenant).get_json(force=True)
    assert got["references"] == refs
    assert call(client, "GET", f"/subjects/{base}/versions/1/referencedby", tenant).get_json(force=True) == [order_id]
    assert call(client, "GET", f"/subjects/{user}/versions/1/referencedby", tenant).get_json(force=True) == []
    error(call(client, "DELETE", f"/subjects/{base}/versions/1", tenant), 422, 42206)
    error(call(client, "DELETE", f"/subjects/{base}", tenant), 422, 42206)
    # Without its reference the schema does not parse.
    error(call(client, "POST", f"/subjects/{new_subject()}/versions", tenant, {"schema": json.dumps(order)}),
          422, 42201)
    # Once the user is gone, the referenced version may go.
    call(client, "DELETE", f"/subjects/{user}", tenant)
    assert call(client, "DELETE", f"/subjects/{base}/versions/1", tenant).status_code == 200
    assert item_id > 0


def test_json_schema_type_is_shown(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    schema = json.dumps({"type": "object", "properties": {"a": {"type": "string"}}})
    schema_id = call(client, "POST", f"/subjects/{subject}/versions", tenant,
                     {"schema": schema, "schemaType": "JSON"}).get_json(force=True)["id"]
    assert call(client, "GET", f"/schemas/ids/{schema_id}", tenant).get_json(force=True) == {
        "schemaType": "JSON", "schema": schema}
    # Another type under the same subject breaks compatibility unless the level is NONE.
    error(call(client, "POST", f"/subjects/{subject}/versions", tenant, {"schema": json.dumps(RECORD)}), 409, 409)


def test_invalid_subject_name_is_42208(client: FlaskClient, tenant: TenantCtx) -> None:
    error(call(client, "POST", f"/subjects/{'x' * 300}/versions", tenant, {"schema": json.dumps(RECORD)}), 422, 42208)


def test_protobuf_schemas_register_too(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    proto = 'syntax = "proto3";\npackage shop;\nmessage Item { string sku = 1; int32 qty = 2; }\n'
    schema_id = call(client, "POST", f"/subjects/{subject}/versions", tenant,
                     {"schema": proto, "schemaType": "PROTOBUF"}).get_json(force=True)["id"]
    assert call(client, "GET", f"/schemas/ids/{schema_id}", tenant).get_json(force=True) == {
        "schemaType": "PROTOBUF", "schema": proto}
    error(call(client, "POST", f"/subjects/{new_subject()}/versions", tenant,
               {"schema": "message {", "schemaType": "PROTOBUF"}), 422, 42201)
