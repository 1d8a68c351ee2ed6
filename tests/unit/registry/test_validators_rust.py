"""The jsonschema-rs pre-check: it may only say "valid" where the exact validators agree; paths/messages unchanged."""
from __future__ import annotations

import math
from typing import Any

import pytest

from app.bus.registry import ValidationFailed, compile_validator
from app.bus.registry import avro_json as avro_json_module
from app.bus.registry.json_schema import bundled
from app.bus.registry.json_validate import _exact, _rust
from tests.unit.registry.helpers import avro, field, jschema, record
from tests.unit.registry.test_validators import ORDER_AVRO, ORDER_JSON, VALID_AVRO, VALID_JSON

D7 = "http://json-schema.org/draft-07/schema#"
D2020 = "https://json-schema.org/draft/2020-12/schema"


def _outcome(validate: Any, datum: Any) -> tuple[str, str] | None:
    try:
        validate(datum)
    except ValidationFailed as exc:
        return exc.path, exc.message
    return None


def _exact_json(schema: dict[str, Any]) -> Any:
    parsed = jschema(schema)
    return _exact(bundled(parsed), parsed.fingerprint)[0]


def _exact_avro(schema: Any) -> Any:
    original = avro_json_module._rust_check
    avro_json_module._rust_check = lambda parsed: None
    try:
        return compile_validator(avro(schema))
    finally:
        avro_json_module._rust_check = original


def test_the_rust_precheck_is_used_for_the_order_schemas() -> None:
    parsed = jschema(ORDER_JSON)
    exact, formats, fast = _exact(bundled(parsed), parsed.fingerprint)
    is_valid = _rust(bundled(parsed), formats, fast, parsed.fingerprint)
    assert is_valid is not None and is_valid(VALID_JSON)
    avro_check = avro_json_module._rust_check(avro(ORDER_AVRO))
    assert avro_check is not None and avro_check(VALID_AVRO)


JSON_CASES = [
    # Python regexes: \d is Unicode in Python, ASCII in ECMA-262 (the exact validator has the last word)
    ({"$schema": D7, "type": "string", "pattern": "^\\d+$"}, ["12", "\u0661\u0662", "x"]),
    ({"$schema": D7, "type": "string", "pattern": "^[^\\d]+$"}, ["ab", "\u0661", "1"]),
    ({"$schema": D7, "type": "string", "pattern": "^\\s*x$"}, ["x", " x", "\ufeffx"]),
    ({"$schema": D7, "type": "string", "pattern": "^a$"}, ["a", "a\n"]),
    ({"$schema": D2020, "type": "string", "pattern": "^a$"}, ["a", "a\n"]),
    # formats follow the exact validator (fastjsonschema's email regex, not jsonschema-rs's RFC check)
    ({"$schema": D7, "format": "email"}, ["a@b.co", "a@b", "a b@c.d", 5]),
    ({"format": "uuid"}, ["00000000-0000-0000-0000-000000000000", "x"]),
    ({"$schema": D7, "format": "uuid"}, ["x"]),
    ({"$schema": D2020, "format": "email"}, ["a@b", "ab"]),
    # float arithmetic: jsonschema (2020-12) divides, fastjsonschema uses decimals
    ({"$schema": D2020, "multipleOf": 0.1}, [0.3, 0.5, 0.35]),
    ({"$schema": D7, "multipleOf": 0.1}, [0.3, 0.35, 19.01]),
    ({"$schema": D7, "type": "integer", "maximum": 2**63}, [1.0, 2**63, 2**63 + 1, 2**70, True]),
    ({"$schema": D7, "type": "number"}, [math.nan, math.inf, 1]),
    # data that is not JSON: jsonschema-rs raises, the exact validator answers
    ({"$schema": D7, "type": "string"}, [b"x"]),
    ({"$schema": D7, "type": "object", "additionalProperties": {"type": "integer"}}, [{1: 2}, {"1": "x"}]),
]


@pytest.mark.parametrize(("schema", "data"), JSON_CASES, ids=[str(s) for s, _ in JSON_CASES])
def test_json_results_match_the_exact_validator(schema: dict[str, Any], data: list[Any]) -> None:
    validate, exact = compile_validator(jschema(schema)), _exact_json(schema)
    for datum in data:
        assert _outcome(validate, datum) == _outcome(exact, datum), datum


def test_json_remote_reference_is_refused_not_fetched() -> None:
    from app.bus.registry import UnresolvedReference

    with pytest.raises(UnresolvedReference):
        jschema({"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}})


AVRO_NODE = record(field("value", "int"), field("next", ["null", "Node"], default=None), name="Node")
AVRO_CASES = [
    (record(field("n", "int")), [{"n": 1}, {"n": 1.0}, {"n": True}, {"n": 2**31}, {"n": -(2**31)}, {}]),
    (record(field("n", "long")), [{"n": 2**63 - 1}, {"n": 2**63}, {"n": -(2**63) - 1}]),
    (record(field("d", "double"), field("f", "float")),
     [{"d": 1, "f": 1.5}, {"d": math.nan, "f": 0}, {"d": "1", "f": 0}]),
    (record(field("u", ["null", "int", "string"])), [{"u": None}, {"u": 1}, {"u": "x"}, {"u": {"int": 1}},
                                                     {"u": {"string": 1}}, {"u": 1.5}, {}]),
    (record(field("b", "bytes"), field("x", {"type": "fixed", "name": "Two", "size": 2})),
     [{"b": "\u00ff", "x": "ab"}, {"b": "\u0100", "x": "ab"}, {"b": "", "x": "abc"}, {"b": b"raw", "x": "ab"}]),
    (AVRO_NODE, [{"value": 1}, {"value": 1, "next": {"value": 2, "next": {"value": 3}}},
                 {"value": 1, "next": {"value": "x"}}, {"value": 1, "next": {"Node": {"value": 2}}}]),
    (record(field("m", {"type": "map", "values": {"type": "array", "items": "string"}}),
            field("extra", "string", default="")),
     [{"m": {"a": ["x"]}, "unknown": 1}, {"m": {"a": [1]}}, {"m": []}]),
    (["null", "string"], [None, "x", 1, {"string": "x"}]),
]


@pytest.mark.parametrize(("schema", "data"), AVRO_CASES, ids=[str(i) for i in range(len(AVRO_CASES))])
def test_avro_results_match_the_exact_validator(schema: Any, data: list[Any]) -> None:
    validate, exact = compile_validator(avro(schema)), _exact_avro(schema)
    for datum in data:
        assert _outcome(validate, datum) == _outcome(exact, datum), datum
