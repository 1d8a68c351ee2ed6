"""JSON Schema compatibility with Confluent's difference types: content models, required, types, ranges."""
from __future__ import annotations

from typing import Any

import pytest

from tests.unit.registry.helpers import backward, forward, jschema, kinds


def obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """An object schema."""
    out: dict[str, Any] = {"type": "object", "properties": props, **extra}
    if required:
        out["required"] = required
    return out


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741

CASES = [
    # (case, old, new, backward errors, forward errors)
    ("open: optional property added", obj({"a": S}), obj({"a": S, "b": I}),
     {"PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"}, set()),
    ("open: property with empty schema added", obj({"a": S}), obj({"a": S, "b": {}}), set(), set()),
    ("open: property removed", obj({"a": S, "b": I}), obj({"a": S}),
     set(), {"PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"}),
    ("closed: optional property added", obj({"a": S}, additionalProperties=False),
     obj({"a": S, "b": I}, additionalProperties=False), set(), {"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"}),
    ("closed: required property added", obj({"a": S}, additionalProperties=False),
     obj({"a": S, "b": I}, ["b"], additionalProperties=False),
     {"REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"}, {"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"}),
    ("closed: required property with default added", obj({"a": S}, additionalProperties=False),
     obj({"a": S, "b": {**I, "default": 0}}, ["b"], additionalProperties=False),
     set(), {"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"}),
    ("closed: property removed", obj({"a": S, "b": I}, additionalProperties=False),
     obj({"a": S}, additionalProperties=False), {"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"}, set()),
    ("open to closed", obj({"a": S}), obj({"a": S}, additionalProperties=False),
     {"ADDITIONAL_PROPERTIES_REMOVED"}, set()),
    ("partial: added property covered", obj({"a": S}, additionalProperties=S),
     obj({"a": S, "b": S}, additionalProperties=S), set(), set()),
    ("partial: added property not covered", obj({"a": S}, additionalProperties=S),
     obj({"a": S, "b": I}, additionalProperties=S),
     {"PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"},
     {"PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"}),
    ("partial: pattern covers added property", obj({"a": S}, patternProperties={"^x_": I}),
     obj({"a": S, "x_n": I}, patternProperties={"^x_": I}), set(), set()),
    ("required attribute added", obj({"a": S, "b": I}), obj({"a": S, "b": I}, ["b"]),
     {"REQUIRED_ATTRIBUTE_ADDED"}, set()),
    ("required attribute removed", obj({"a": S, "b": I}, ["b"]), obj({"a": S, "b": I}),
     set(), {"REQUIRED_ATTRIBUTE_ADDED"}),
    ("type extended integer to number", obj({"n": I}), obj({"n": {"type": "number"}}), set(), {"TYPE_NARROWED"}),
    ("type changed string to integer", obj({"n": S}), obj({"n": I}), {"TYPE_CHANGED"}, {"TYPE_CHANGED"}),
    ("nullable dropped", obj({"n": {"type": ["string", "null"]}}), obj({"n": S}), {"TYPE_NARROWED"}, set()),
    ("enum extended", obj({"e": {"enum": ["a", "b"]}}), obj({"e": {"enum": ["a", "b", "c"]}}),
     set(), {"ENUM_ARRAY_NARROWED"}),
    ("enum changed", obj({"e": {"enum": ["a", "b"]}}), obj({"e": {"enum": ["a", "c"]}}),
     {"ENUM_ARRAY_CHANGED"}, {"ENUM_ARRAY_CHANGED"}),
    ("const changed", obj({"e": {"const": 1}}), obj({"e": {"const": 2}}),
     {"ENUM_ARRAY_CHANGED"}, {"ENUM_ARRAY_CHANGED"}),
    ("maxLength decreased", obj({"s": {**S, "maxLength": 10}}), obj({"s": {**S, "maxLength": 5}}),
     {"MAX_LENGTH_DECREASED"}, set()),
    ("maxLength added", obj({"s": S}), obj({"s": {**S, "maxLength": 5}}), {"MAX_LENGTH_ADDED"}, set()),
    ("minLength increased", obj({"s": {**S, "minLength": 1}}), obj({"s": {**S, "minLength": 2}}),
     {"MIN_LENGTH_INCREASED"}, set()),
    ("pattern added", obj({"s": S}), obj({"s": {**S, "pattern": "^a"}}), {"PATTERN_ADDED"}, set()),
    ("pattern changed", obj({"s": {**S, "pattern": "^a"}}), obj({"s": {**S, "pattern": "^b"}}),
     {"PATTERN_CHANGED"}, {"PATTERN_CHANGED"}),
    ("maximum decreased", obj({"n": {**I, "maximum": 10}}), obj({"n": {**I, "maximum": 5}}),
     {"MAXIMUM_DECREASED"}, set()),
    ("minimum increased", obj({"n": {**I, "minimum": 0}}), obj({"n": {**I, "minimum": 1}}),
     {"MINIMUM_INCREASED"}, set()),
    ("exclusiveMaximum added", obj({"n": I}), obj({"n": {**I, "exclusiveMaximum": 5}}),
     {"EXCLUSIVE_MAXIMUM_ADDED"}, set()),
    ("exclusive to inclusive bound at same value", obj({"n": {**I, "exclusiveMaximum": 5}}),
     obj({"n": {**I, "maximum": 5}}), set(), {"EXCLUSIVE_MAXIMUM_DECREASED"}),
    ("multipleOf expanded", obj({"n": {**I, "multipleOf": 2}}), obj({"n": {**I, "multipleOf": 4}}),
     {"MULTIPLE_OF_EXPANDED"}, set()),
    ("multipleOf changed", obj({"n": {**I, "multipleOf": 2}}), obj({"n": {**I, "multipleOf": 3}}),
     {"MULTIPLE_OF_CHANGED"}, {"MULTIPLE_OF_CHANGED"}),
    ("maxItems decreased", obj({"l": {"type": "array", "maxItems": 5}}),
     obj({"l": {"type": "array", "maxItems": 3}}),
     {"MAX_ITEMS_DECREASED"}, set()),
    ("minItems increased", obj({"l": {"type": "array"}}), obj({"l": {"type": "array", "minItems": 1}}),
     {"MIN_ITEMS_ADDED"}, set()),
    ("uniqueItems added", obj({"l": {"type": "array"}}), obj({"l": {"type": "array", "uniqueItems": True}}),
     {"UNIQUE_ITEMS_ADDED"}, set()),
    ("maxProperties decreased", obj({}, maxProperties=5), obj({}, maxProperties=2),
     {"MAX_PROPERTIES_DECREASED"}, set()),
    ("items narrowed", obj({"l": {"type": "array", "items": {"type": "number"}}}),
     obj({"l": {"type": "array", "items": I}}), {"TYPE_NARROWED"}, set()),
    ("type list to anyOf", obj({"v": {"type": ["string", "integer"]}}), obj({"v": {"anyOf": [S, I]}}), set(), set()),
    ("anyOf alternative added", obj({"v": {"anyOf": [S, I]}}), obj({"v": {"anyOf": [S, I, {"type": "null"}]}}),
     set(), {"SUM_TYPE_NARROWED"}),
    ("draft-4 boolean exclusiveMaximum", {"$schema": "http://json-schema.org/draft-04/schema#",
                                          "type": "number", "maximum": 5},
     {"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 5,
      "exclusiveMaximum": True}, {"MAXIMUM_DECREASED"}, set()),
    ("description and title changes", obj({"a": S}, title="A"), obj({"a": {**S, "description": "d"}}, title="B"),
     set(), set()),
]


@pytest.mark.parametrize(("case", "old", "new", "back", "fwd"), CASES, ids=[c[0] for c in CASES])
def test_json_schema_changes(case: str, old: Any, new: Any, back: set[str], fwd: set[str]) -> None:
    old_s, new_s = jschema(old), jschema(new)
    assert kinds(backward(old_s, new_s)) == back
    assert kinds(forward(old_s, new_s)) == fwd


def test_nested_objects_report_the_nested_path() -> None:
    old = obj({"address": obj({"zip": S, "city": S})})
    new = obj({"address": obj({"zip": {**S, "maxLength": 5}, "city": S})})
    [message] = backward(jschema(old), jschema(new))
    assert message.startswith("MAX_LENGTH_ADDED at '#/properties/address/properties/zip/maxLength'")


def test_local_refs_are_followed() -> None:
    old = {"definitions": {"money": {"type": "number"}}, **obj({"price": {"$ref": "#/definitions/money"}})}
    new = {"definitions": {"money": {"type": "integer"}}, **obj({"price": {"$ref": "#/definitions/money"}})}
    assert kinds(backward(jschema(old), jschema(new))) == {"TYPE_NARROWED"}
    assert forward(jschema(old), jschema(new)) == []


def test_recursive_schema_terminates() -> None:
    tree = obj({"name": S, "children": {"type": "array", "items": {"$ref": "#"}}})
    tree_v2 = obj({"name": {**S, "maxLength": 9}, "children": {"type": "array", "items": {"$ref": "#"}}})
    assert kinds(backward(jschema(tree), jschema(tree_v2))) == {"MAX_LENGTH_ADDED"}


def test_external_references_are_compared() -> None:
    old = jschema({"$ref": "money.json"}, {"money.json": '{"type": "number", "maximum": 100}'})
    new = jschema({"$ref": "money.json"}, {"money.json": '{"type": "number", "maximum": 10}'})
    assert kinds(backward(old, new)) == {"MAXIMUM_DECREASED"}


def test_tuple_items() -> None:
    old = {"type": "array", "items": [S, I], "additionalItems": False}
    new = {"type": "array", "items": [S], "additionalItems": False}
    assert kinds(backward(jschema(old), jschema(new))) == {"ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"}
    assert forward(jschema(old), jschema(new)) == []


def test_boolean_schemas() -> None:
    assert backward(jschema(False), jschema(obj({"a": S}))) == []
    assert kinds(backward(jschema(True), jschema(False))) == {"TYPE_NARROWED"}


def test_shared_definition_reports_every_use() -> None:
    def schema(money: str) -> dict[str, Any]:
        return {"definitions": {"money": {"type": money}},
                **obj({"price": {"$ref": "#/definitions/money"}, "cost": {"$ref": "#/definitions/money"}})}

    messages = backward(jschema(schema("number")), jschema(schema("integer")))
    assert [m.split("'")[1] for m in messages] == ["#/properties/price", "#/properties/cost"]
