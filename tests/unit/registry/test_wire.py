"""Confluent wire format and Avro binary encode/decode of JSON values."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.bus.registry import (
    ValidationFailed,
    avro_decode,
    avro_encode,
    compile_validator,
    decode_wire,
    encode_wire,
    split_protobuf_indexes,
)
from tests.unit.registry.helpers import avro, field, record
from tests.unit.registry.test_validators import ORDER_AVRO, VALID_AVRO


def test_wire_header_round_trip() -> None:
    framed = encode_wire(258, b"payload")
    assert framed[:5] == b"\x00\x00\x00\x01\x02"
    assert decode_wire(framed) == (258, b"payload")


@pytest.mark.parametrize("value", [b"", b"\x00\x00\x01", b"\x01\x00\x00\x00\x01x", b'{"json": true}'])
def test_not_wire_format(value: bytes) -> None:
    assert decode_wire(value) is None


def test_schema_id_must_fit() -> None:
    with pytest.raises(ValueError):
        encode_wire(2**32, b"")
    with pytest.raises(ValueError):
        encode_wire(-1, b"")


def test_protobuf_message_indexes() -> None:
    assert split_protobuf_indexes(b"\x00body") == ([0], b"body")
    # [1, 2] zigzag: count 2 -> 4, 1 -> 2, 2 -> 4
    assert split_protobuf_indexes(b"\x04\x02\x04body") == ([1, 2], b"body")
    with pytest.raises(ValueError):
        split_protobuf_indexes(b"\x04")


def test_avro_round_trip_of_a_20_field_record() -> None:
    parsed = avro(ORDER_AVRO)
    payload = avro_encode(parsed, VALID_AVRO)
    decoded = avro_decode(parsed, decode_wire(encode_wire(9, payload))[1])
    assert decoded == VALID_AVRO
    compile_validator(parsed)(decoded)  # decoded values validate unchanged
    assert avro_encode(parsed, decoded) == payload


def test_avro_encode_fills_defaults_and_rejects_bad_data() -> None:
    parsed = avro(record(field("a", "int"), field("b", "string", default="x"), field("c", "bytes", default="\u00ff")))
    assert avro_decode(parsed, avro_encode(parsed, {"a": 1})) == {"a": 1, "b": "x", "c": "\u00ff"}
    with pytest.raises(ValidationFailed):
        avro_encode(parsed, {"a": "one"})


def test_avro_decode_rejects_malformed_payloads() -> None:
    parsed = avro(record(field("a", "string")))
    with pytest.raises(ValueError):
        avro_decode(parsed, b"\x0a")  # a 5-byte string with no bytes
    with pytest.raises(ValueError):
        avro_decode(parsed, avro_encode(parsed, {"a": "x"}) + b"extra")


def test_top_level_union_with_referenced_record() -> None:
    money = '{"type":"record","name":"shop.Money","fields":[{"name":"cents","type":"long"}]}'
    parsed = avro(["null", "shop.Money"], {"shop.Money": money})
    assert avro_decode(parsed, avro_encode(parsed, {"cents": 5})) == {"cents": 5}
    assert avro_decode(parsed, avro_encode(parsed, None)) is None
    compile_validator(parsed)({"cents": 5})


_RECORD = avro(record(field("n", "long"), field("s", "string"), field("b", "bytes"),
                      field("o", ["null", "double"], default=None), field("l", {"type": "array", "items": "int"})))


@settings(max_examples=80, deadline=None)
@given(st.fixed_dictionaries({
    "n": st.integers(-(2**63), 2**63 - 1),
    "s": st.text(),
    "b": st.binary().map(lambda b: b.decode("latin-1")),
    "o": st.one_of(st.none(), st.floats(allow_nan=False)),
    "l": st.lists(st.integers(-(2**31), 2**31 - 1)),
}))
def test_avro_round_trip_property(datum: dict) -> None:
    assert avro_decode(_RECORD, avro_encode(_RECORD, datum)) == datum
