"""The seven compatibility levels: direction, latest-only versus transitive, labels and bad input."""
from __future__ import annotations

import pytest

from app.bus.registry import LEVELS, check_compatibility
from tests.unit.registry.helpers import avro, field, jschema, kinds, record

# v1 -> v2 -> v3 where each step is FULL compatible, but v3 cannot read v1 nor v1 read v3 (string vs int)
V1 = avro(record(field("a", "string")))
V2 = avro(record())
V3 = avro(record(field("a", "int", default=0)))

CHAIN_EXPECTED = {
    "NONE": True,
    "BACKWARD": True,
    "BACKWARD_TRANSITIVE": False,
    "FORWARD": True,
    "FORWARD_TRANSITIVE": False,
    "FULL": True,
    "FULL_TRANSITIVE": False,
}


@pytest.mark.parametrize("level", LEVELS)
def test_three_version_chain_only_transitive_levels_fail(level: str) -> None:
    messages = check_compatibility(level, V3, [V1, V2])
    assert (messages == []) is CHAIN_EXPECTED[level], messages
    if messages:
        assert kinds(messages) == {"TYPE_MISMATCH"}
        assert all("version 1" in m for m in messages)


# one change against a single older version: (change, old, new, compatible per direction)
ADD_NO_DEFAULT = (avro(record(field("a", "int"))), avro(record(field("a", "int"), field("b", "int"))))
DROP_NO_DEFAULT = (ADD_NO_DEFAULT[1], ADD_NO_DEFAULT[0])
ADD_DEFAULT = (avro(record(field("a", "int"))), avro(record(field("a", "int"), field("b", "int", default=1))))
WIDEN = (avro(record(field("a", "int"))), avro(record(field("a", "long"))))
OPEN_ADD = (jschema({"type": "object", "properties": {"a": {"type": "string"}}}),
            jschema({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}))
CLOSED_ADD = (
    jschema({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}),
    jschema({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
             "additionalProperties": False}),
)

MATRIX = [
    # (name, pair, backward ok, forward ok)
    ("avro add field with default", ADD_DEFAULT, True, True),
    ("avro add field without default", ADD_NO_DEFAULT, False, True),
    ("avro drop field without default", DROP_NO_DEFAULT, True, False),
    ("avro int to long", WIDEN, True, False),
    ("json add property to open model", OPEN_ADD, False, True),
    ("json add optional property to closed model", CLOSED_ADD, True, False),
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(("name", "pair", "back_ok", "fwd_ok"), MATRIX, ids=[m[0] for m in MATRIX])
def test_single_change_matrix(level: str, name: str, pair: tuple, back_ok: bool, fwd_ok: bool) -> None:
    old, new = pair
    expected = {
        "NONE": True,
        "BACKWARD": back_ok, "BACKWARD_TRANSITIVE": back_ok,
        "FORWARD": fwd_ok, "FORWARD_TRANSITIVE": fwd_ok,
        "FULL": back_ok and fwd_ok, "FULL_TRANSITIVE": back_ok and fwd_ok,
    }[level]
    assert (check_compatibility(level, new, [old]) == []) is expected


def test_no_existing_versions_is_compatible() -> None:
    assert check_compatibility("FULL_TRANSITIVE", V1, []) == []


def test_level_is_case_insensitive_and_validated() -> None:
    assert check_compatibility("backward", V3, [V2]) == []
    with pytest.raises(ValueError, match="unknown compatibility level"):
        check_compatibility("SIDEWAYS", V3, [V2])


def test_versions_label_messages_and_must_match() -> None:
    messages = check_compatibility("BACKWARD_TRANSITIVE", V3, [V1, V2], versions=[4, 7])
    assert messages and all("version 4" in m for m in messages)
    with pytest.raises(ValueError):
        check_compatibility("BACKWARD", V3, [V1, V2], versions=[1])


def test_direction_is_named_in_full_messages() -> None:
    old, new = ADD_NO_DEFAULT
    [message] = check_compatibility("FULL", new, [old])
    assert message.startswith("READER_FIELD_MISSING_DEFAULT_VALUE at '/fields/1'")
    assert message.endswith("(new schema reading version 1)")
    old, new = DROP_NO_DEFAULT
    [message] = check_compatibility("FULL", new, [old])
    assert message.endswith("(version 1 reading new schema)")


def test_schema_type_change_is_incompatible() -> None:
    messages = check_compatibility("BACKWARD", jschema({"type": "string"}), [V1])
    assert kinds(messages) == {"SCHEMA_TYPE_CHANGED"}
