"""Confluent wire format (magic byte 0 + big-endian schema id) and Avro binary payload helpers."""
from __future__ import annotations

import io
import logging
import struct
from typing import Any

from app.bus.registry.types import ParsedSchema

logger = logging.getLogger(__name__)

MAGIC = 0
_HEADER = struct.Struct(">bI")


def encode_wire(schema_id: int, payload: bytes) -> bytes:
    """Prefix a serialised payload with the Confluent header: magic 0 and the 4-byte big-endian schema id."""
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise ValueError(f"schema id {schema_id} does not fit in 4 bytes")
    return _HEADER.pack(MAGIC, schema_id) + payload


def decode_wire(value: bytes) -> tuple[int, bytes] | None:
    """(schema id, payload) of a Confluent-framed value, or None when the value is not in that format.

    For Protobuf the payload still starts with the message-index array; see ``split_protobuf_indexes``.
    """
    if value is None or len(value) < _HEADER.size or value[0] != MAGIC:
        return None
    _, schema_id = _HEADER.unpack_from(value)
    return schema_id, bytes(value[_HEADER.size :])


def split_protobuf_indexes(payload: bytes) -> tuple[list[int], bytes]:
    """Split a Confluent Protobuf payload into its message-index path and the protobuf message bytes."""
    buf = io.BytesIO(payload)
    count = _read_zigzag(buf)
    # why: Confluent writes a single 0 byte as shorthand for [0] (the first message of the file)
    indexes = [0] if count == 0 else [_read_zigzag(buf) for _ in range(count)]
    return indexes, payload[buf.tell() :]


def _read_zigzag(buf: io.BytesIO) -> int:
    """Read one zigzag-encoded varint."""
    shift = result = 0
    while True:
        raw = buf.read(1)
        if not raw:
            raise ValueError("truncated varint in protobuf message indexes")
        byte = raw[0]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint too long in protobuf message indexes")
    return (result >> 1) ^ -(result & 1)


def avro_encode(parsed: ParsedSchema, datum: Any) -> bytes:
    """Avro binary (schemaless) encoding of a JSON datum; bytes/fixed values are Avro-JSON latin-1 strings."""
    from app.bus.registry.avro_json import encode

    return encode(parsed, datum)


def avro_decode(parsed: ParsedSchema, payload: bytes) -> Any:
    """Decode an Avro binary payload into JSON-able values (bytes/fixed as latin-1 strings, raw logical types)."""
    from app.bus.registry.avro_json import decode

    return decode(parsed, payload)
