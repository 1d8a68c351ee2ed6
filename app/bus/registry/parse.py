"""Entry point for parsing a schema of any supported type into a ParsedSchema."""
from __future__ import annotations

import logging
from collections.abc import Mapping

from app.bus.registry.types import SCHEMA_TYPES, ParsedSchema, SchemaError

logger = logging.getLogger(__name__)


def parse_schema(schema_type: str | None, schema: str, references: Mapping[str, str] | None = None) -> ParsedSchema:
    """Parse, validate, normalise and fingerprint a schema; raises SchemaError (API 42201) when invalid.

    ``schema_type`` is AVRO (also when empty/None, as in Confluent), JSON or PROTOBUF.
    ``references`` maps a reference name (Avro full name, JSON ``$ref`` URL/file name, proto import path)
    to the referenced schema's text.
    """
    kind = (schema_type or "AVRO").upper()
    if kind not in SCHEMA_TYPES:
        raise SchemaError(f"unknown schema type '{schema_type}': expected one of {', '.join(SCHEMA_TYPES)}")
    if not isinstance(schema, str) or not schema.strip():
        raise SchemaError("schema is empty")
    refs = dict(references or {})
    if kind == "AVRO":
        from app.bus.registry.avro import parse_avro

        return parse_avro(schema, refs)
    if kind == "JSON":
        from app.bus.registry.json_schema import parse_json_schema

        return parse_json_schema(schema, refs)
    from app.bus.registry.protobuf import parse_protobuf

    return parse_protobuf(schema, refs)
