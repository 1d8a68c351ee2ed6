"""Protobuf: register-time checks, the compatibility subset and JSON validation against the first message."""
from __future__ import annotations

from typing import Any

import pytest

from app.bus.registry import ValidationFailed, compile_validator
from tests.unit.registry.helpers import backward, forward, kinds, proto

BASE = """
syntax = "proto3";
package shop;
message Order {
  string id = 1;
  int32 qty = 2;
  repeated Line lines = 3;
  map<string, string> labels = 4;
  oneof payment { string card = 5; string iban = 6; }
  Status status = 7;
  bytes blob = 8;
  int64 cents = 9;
  message Line { string sku = 1; double price = 2; }
  enum Status { UNKNOWN = 0; PAID = 1; }
}
"""


def _variant(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


CASES = [
    # (case, new schema text, backward errors, forward errors)
    ("field added", _variant("bytes blob = 8;", "bytes blob = 8; string note = 10;"), set(), set()),
    ("field removed", _variant("bytes blob = 8;", ""), set(), set()),
    ("field renamed", _variant("int32 qty = 2;", "int32 quantity = 2;"), set(), set()),
    ("int32 widened to int64", _variant("int32 qty = 2;", "int64 qty = 2;"), set(), set()),
    ("number reused with another scalar type", _variant("int32 qty = 2;", "string qty = 2;"),
     {"FIELD_SCALAR_KIND_CHANGED"}, {"FIELD_SCALAR_KIND_CHANGED"}),
    ("number reused with a message type", _variant("int32 qty = 2;", "Line qty = 2;"),
     {"FIELD_KIND_CHANGED"}, {"FIELD_KIND_CHANGED"}),
    ("singular to repeated", _variant("int32 qty = 2;", "repeated int32 qty = 2;"),
     {"FIELD_KIND_CHANGED"}, {"FIELD_KIND_CHANGED"}),
    ("renumbered", _variant("int32 qty = 2;", "int32 qty = 12;"),
     {"FIELD_NUMBER_CHANGED"}, {"FIELD_NUMBER_CHANGED"}),
    ("named type changed", _variant("Status status = 7;", "Line status = 7;"),
     {"FIELD_NAMED_TYPE_CHANGED"}, {"FIELD_NAMED_TYPE_CHANGED"}),
    ("oneof member removed", _variant("string iban = 6;", ""), {"ONEOF_FIELD_REMOVED"}, set()),
    ("fields moved into a oneof",
     _variant("string id = 1;\n  int32 qty = 2;", "oneof key { string id = 1; int32 qty = 2; }"),
     {"MULTIPLE_FIELDS_MOVED_TO_ONEOF"}, set()),
    ("package changed", _variant("package shop;", "package store;"),
     {"PACKAGE_CHANGED", "MESSAGE_REMOVED"}, {"PACKAGE_CHANGED", "MESSAGE_REMOVED"}),
    ("enum value added", _variant("PAID = 1;", "PAID = 1; REFUNDED = 2;"), set(), set()),
]


@pytest.mark.parametrize(("case", "new", "back", "fwd"), CASES, ids=[c[0] for c in CASES])
def test_protobuf_changes(case: str, new: str, back: set[str], fwd: set[str]) -> None:
    old_s, new_s = proto(BASE), proto(new)
    assert kinds(backward(old_s, new_s)) == back
    assert kinds(forward(old_s, new_s)) == fwd


def test_proto2_required_fields() -> None:
    old = proto('syntax = "proto2"; message M { optional string a = 1; }')
    added = proto('syntax = "proto2"; message M { optional string a = 1; required int32 b = 2; }')
    assert kinds(backward(old, added)) == {"REQUIRED_FIELD_ADDED"}
    assert forward(old, added) == []
    # removing a required field: old readers still require it
    assert kinds(forward(added, old)) == {"REQUIRED_FIELD_ADDED"}
    assert backward(added, old) == []


def test_message_removed() -> None:
    old = proto('syntax = "proto3"; message A { string a = 1; } message B { string b = 1; }')
    new = proto('syntax = "proto3"; message A { string a = 1; }')
    [message] = backward(old, new)
    assert message.startswith("MESSAGE_REMOVED at '/B'")


VALID: dict[str, Any] = {
    "id": "o-1", "qty": 2, "lines": [{"sku": "A", "price": 1.5}, {"sku": "B", "price": "NaN"}],
    "labels": {"k": "v"}, "card": "4111", "status": "PAID", "blob": "AAE=", "cents": "9007199254740993",
}


def test_valid_json_for_first_message() -> None:
    validate = compile_validator(proto(BASE))
    validate(VALID)
    validate({"id": None, "status": 1})  # null means unset; enums by number too


@pytest.mark.parametrize(
    ("datum", "path"),
    [
        ({"id": 1}, "$.id"),
        ({"qty": 2**31}, "$.qty"),
        ({"qty": "x"}, "$.qty"),
        ({"lines": [{"sku": "A"}, {"price": "cheap"}]}, "$.lines[1].price"),
        ({"lines": {"sku": "A"}}, "$.lines"),
        ({"labels": {"k": 1}}, "$.labels.k"),
        ({"card": "1", "iban": "2"}, "$.iban"),
        ({"status": "LOST"}, "$.status"),
        ({"blob": "not base64!"}, "$.blob"),
        ({"nope": 1}, "$.nope"),
        ([], "$"),
    ],
)
def test_invalid_json_for_first_message(datum: Any, path: str) -> None:
    validate = compile_validator(proto(BASE))
    with pytest.raises(ValidationFailed) as caught:
        validate(datum)
    assert caught.value.path == path


def test_json_names_and_required_proto2() -> None:
    validate = compile_validator(proto('syntax = "proto2"; message M { required string order_id = 1; }'))
    validate({"orderId": "x"})
    validate({"order_id": "x"})
    with pytest.raises(ValidationFailed) as caught:
        validate({})
    assert caught.value.path == "$.order_id"
