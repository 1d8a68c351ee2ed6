"""Avro compatibility: the specification's "Schema Resolution" rules, one case each, in both directions."""
from __future__ import annotations

from typing import Any

import pytest

from app.bus.registry import check_compatibility
from tests.unit.registry.helpers import avro, backward, field, forward, kinds, record

# (case, writer type, reader type, error type or None) for a field "v" present on both sides
PROMOTIONS = [
    ("int to long", "int", "long", None),
    ("int to float", "int", "float", None),
    ("int to double", "int", "double", None),
    ("long to float", "long", "float", None),
    ("long to double", "long", "double", None),
    ("float to double", "float", "double", None),
    ("string to bytes", "string", "bytes", None),
    ("bytes to string", "bytes", "string", None),
    ("long to int", "long", "int", "TYPE_MISMATCH"),
    ("double to float", "double", "float", "TYPE_MISMATCH"),
    ("float to long", "float", "long", "TYPE_MISMATCH"),
    ("int to string", "int", "string", "TYPE_MISMATCH"),
    ("boolean to int", "boolean", "int", "TYPE_MISMATCH"),
    ("null to string", "null", "string", "TYPE_MISMATCH"),
    ("same primitive", "string", "string", None),
    ("array items promoted", {"type": "array", "items": "int"}, {"type": "array", "items": "long"}, None),
    ("array items narrowed", {"type": "array", "items": "long"}, {"type": "array", "items": "int"}, "TYPE_MISMATCH"),
    ("map values promoted", {"type": "map", "values": "float"}, {"type": "map", "values": "double"}, None),
    ("map values changed", {"type": "map", "values": "string"}, {"type": "map", "values": "int"}, "TYPE_MISMATCH"),
    ("array to map", {"type": "array", "items": "int"}, {"type": "map", "values": "int"}, "TYPE_MISMATCH"),
    ("logical type ignored", {"type": "long", "logicalType": "timestamp-millis"}, "long", None),
]


@pytest.mark.parametrize(("case", "writer", "reader", "error"), PROMOTIONS, ids=[p[0] for p in PROMOTIONS])
def test_type_resolution(case: str, writer: Any, reader: Any, error: str | None) -> None:
    messages = backward(avro(record(field("v", writer))), avro(record(field("v", reader))))
    assert kinds(messages) == ({error} if error else set()), messages
    if error:
        assert "/fields/0/type" in messages[0]


FIELD_CASES = [
    # (case, old fields, new fields, backward error, forward error)
    ("add field with default", [field("a", "int")], [field("a", "int"), field("b", "string", default="x")],
     None, None),
    ("add field without default", [field("a", "int")], [field("a", "int"), field("b", "string")],
     "READER_FIELD_MISSING_DEFAULT_VALUE", None),
    ("remove field with default", [field("a", "int"), field("b", "string", default="")], [field("a", "int")],
     None, None),
    ("remove field without default", [field("a", "int"), field("b", "string")], [field("a", "int")],
     None, "READER_FIELD_MISSING_DEFAULT_VALUE"),
    ("rename field with alias", [field("total", "double")], [field("amount", "double", aliases=["total"])],
     None, "READER_FIELD_MISSING_DEFAULT_VALUE"),
    ("add nullable field with null default", [field("a", "int")],
     [field("a", "int"), field("note", ["null", "string"], default=None)], None, None),
]


@pytest.mark.parametrize(("case", "old", "new", "back", "fwd"), FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_record_field_defaults(case: str, old: list[Any], new: list[Any], back: str | None, fwd: str | None) -> None:
    old_s, new_s = avro(record(*old)), avro(record(*new))
    assert kinds(backward(old_s, new_s)) == ({back} if back else set())
    assert kinds(forward(old_s, new_s)) == ({fwd} if fwd else set())


def test_missing_default_message_names_the_field_and_version() -> None:
    old = avro(record(field("id", "string")))
    new = avro(record(field("id", "string"), field("total", "double")))
    [message] = check_compatibility("BACKWARD", new, [old], versions=[3])
    assert "reader field 'total'" in message
    assert "has no default and is missing in writer" in message
    assert "version 3" in message


def _enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Status", "symbols": list(symbols), **extra}


@pytest.mark.parametrize(
    ("case", "old", "new", "back", "fwd"),
    [
        ("symbol added", _enum("A", "B"), _enum("A", "B", "C"), None, "MISSING_ENUM_SYMBOLS"),
        ("symbol removed", _enum("A", "B", "C"), _enum("A", "B"), "MISSING_ENUM_SYMBOLS", None),
        ("symbol removed, reader default", _enum("A", "B", "C"), _enum("A", "B", default="A"), None, None),
        ("symbol added, old has default", _enum("A", "B", default="A"), _enum("A", "B", "C"), None, None),
        ("renamed enum", _enum("A"), {**_enum("A"), "name": "State"}, "NAME_MISMATCH", "NAME_MISMATCH"),
        ("renamed enum with alias", _enum("A"), {**_enum("A"), "name": "State", "aliases": ["Status"]},
         None, "NAME_MISMATCH"),
    ],
)
def test_enums(case: str, old: Any, new: Any, back: str | None, fwd: str | None) -> None:
    old_s, new_s = avro(record(field("s", old))), avro(record(field("s", new)))
    assert kinds(backward(old_s, new_s)) == ({back} if back else set())
    assert kinds(forward(old_s, new_s)) == ({fwd} if fwd else set())


@pytest.mark.parametrize(
    ("case", "old", "new", "back", "fwd"),
    [
        ("branch added", ["null", "string"], ["null", "string", "int"], None, "MISSING_UNION_BRANCH"),
        ("branch removed", ["null", "string", "int"], ["null", "string"], "MISSING_UNION_BRANCH", None),
        ("plain to union", "string", ["null", "string"], None, "TYPE_MISMATCH"),
        ("union to plain", ["null", "string"], "string", "TYPE_MISMATCH", None),
        ("promotion into union", "int", ["null", "long"], None, "TYPE_MISMATCH"),
        ("union branch promoted", ["null", "int"], ["null", "long"], None, "MISSING_UNION_BRANCH"),
        ("branches reordered", ["null", "string"], ["string", "null"], None, None),
        ("no branch for plain", "boolean", ["null", "string"], "MISSING_UNION_BRANCH", "TYPE_MISMATCH"),
    ],
)
def test_unions(case: str, old: Any, new: Any, back: str | None, fwd: str | None) -> None:
    old_default = {"default": None} if isinstance(old, list) and old[0] == "null" else {}
    new_default = {"default": None} if isinstance(new, list) and new[0] == "null" else {}
    old_s, new_s = avro(record(field("u", old, **old_default))), avro(record(field("u", new, **new_default)))
    assert kinds(backward(old_s, new_s)) == ({back} if back else set())
    assert kinds(forward(old_s, new_s)) == ({fwd} if fwd else set())


def test_union_of_records_checks_the_record_content() -> None:
    item_v1 = record(field("sku", "string"), name="Item")
    item_v2 = record(field("sku", "string"), field("qty", "int"), name="Item")
    old = avro(record(field("item", ["null", item_v1], default=None)))
    new = avro(record(field("item", ["null", item_v2], default=None)))
    assert kinds(backward(old, new)) == {"READER_FIELD_MISSING_DEFAULT_VALUE"}


@pytest.mark.parametrize(
    ("case", "old", "new", "back", "fwd"),
    [
        ("record renamed", record(field("a", "int")), record(field("a", "int"), name="Purchase"),
         "NAME_MISMATCH", "NAME_MISMATCH"),
        ("record renamed with alias", record(field("a", "int")),
         record(field("a", "int"), name="Purchase", aliases=["shop.Order"]), None, "NAME_MISMATCH"),
        ("namespace changed only", record(field("a", "int")), {**record(field("a", "int")), "namespace": "store"},
         None, None),
    ],
)
def test_record_names_and_aliases(case: str, old: Any, new: Any, back: str | None, fwd: str | None) -> None:
    old_s, new_s = avro(record(field("r", old), name="Envelope")), avro(record(field("r", new), name="Envelope"))
    assert kinds(backward(old_s, new_s)) == ({back} if back else set())
    assert kinds(forward(old_s, new_s)) == ({fwd} if fwd else set())


@pytest.mark.parametrize(
    ("old_size", "new_size", "error"), [(16, 16, None), (16, 32, "FIXED_SIZE_MISMATCH")]
)
def test_fixed_size(old_size: int, new_size: int, error: str | None) -> None:
    old = avro(record(field("h", {"type": "fixed", "name": "Hash", "size": old_size})))
    new = avro(record(field("h", {"type": "fixed", "name": "Hash", "size": new_size})))
    assert kinds(backward(old, new)) == ({error} if error else set())
    assert kinds(forward(old, new)) == ({error} if error else set())


def test_fixed_renamed_with_alias() -> None:
    old = avro(record(field("h", {"type": "fixed", "name": "Hash", "size": 16})))
    new = avro(record(field("h", {"type": "fixed", "name": "Digest", "size": 16, "aliases": ["Hash"]})))
    assert backward(old, new) == []
    assert kinds(forward(old, new)) == {"NAME_MISMATCH"}


def test_recursive_record_terminates() -> None:
    node = {"type": "record", "name": "Node", "fields": [
        field("value", "int"), field("next", ["null", "Node"], default=None)]}
    node_v2 = {"type": "record", "name": "Node", "fields": [
        field("value", "long"), field("next", ["null", "Node"], default=None)]}
    assert backward(avro(node), avro(node_v2)) == []
    assert kinds(forward(avro(node), avro(node_v2))) == {"TYPE_MISMATCH"}


def test_referenced_types_take_part_in_resolution() -> None:
    money_v1 = '{"type":"record","name":"shop.Money","fields":[{"name":"cents","type":"int"}]}'
    money_v2 = money_v1.replace('"int"}]', '"int"},{"name":"cur","type":"string"}]')
    old = avro(record(field("price", "shop.Money")), {"shop.Money": money_v1})
    new = avro(record(field("price", "shop.Money")), {"shop.Money": money_v2})
    assert kinds(backward(old, new)) == {"READER_FIELD_MISSING_DEFAULT_VALUE"}
