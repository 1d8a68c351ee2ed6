"""Schema registry core: parse, canonicalise, fingerprint, check compatibility, validate, wire format.

Framework-free; the Confluent-compatible API (app/registry_api) and publish validation build on it.

- ``parse_schema`` raises SchemaError (API 42201; UnresolvedReference for missing references). Store the raw
  text and references; re-parse on load. ``fingerprint`` = sha256 of type + canonical + sorted references:
  equal fingerprints are the same schema (same id). Canonical forms: see avro.py, json_schema.py, protobuf.py.
- ``check_compatibility`` returns "<TYPE> at '<path>': <what broke> (<who reads whom>)" messages.
- Validators raise ValidationFailed(path, message); paths are JSONPath (``$.items[2].price``,
  ``$['odd key']``). JSON mapping of Avro values: avro_json.py; Protobuf subset: protobuf_validate.py.
- Wire format: ``encode_wire``/``decode_wire``; Protobuf payloads keep their message indexes
  (``split_protobuf_indexes``) and are not decoded.
"""
from __future__ import annotations

from app.bus.registry.compat import check_compatibility
from app.bus.registry.parse import parse_schema
from app.bus.registry.types import (
    LEVELS,
    SCHEMA_TYPES,
    ParsedSchema,
    SchemaError,
    UnresolvedReference,
    ValidationFailed,
)
from app.bus.registry.validators import compile_validator, validator_for
from app.bus.registry.wire import avro_decode, avro_encode, decode_wire, encode_wire, split_protobuf_indexes

__all__ = [
    "LEVELS",
    "SCHEMA_TYPES",
    "ParsedSchema",
    "SchemaError",
    "UnresolvedReference",
    "ValidationFailed",
    "avro_decode",
    "avro_encode",
    "check_compatibility",
    "compile_validator",
    "decode_wire",
    "encode_wire",
    "parse_schema",
    "split_protobuf_indexes",
    "validator_for",
]
