"""Builders shared by the registry tests."""
from __future__ import annotations

import json
from typing import Any

from app.bus.registry import ParsedSchema, check_compatibility, parse_schema


def avro(schema: Any, references: dict[str, str] | None = None) -> ParsedSchema:
    """Parse an Avro schema given as a Python structure."""
    return parse_schema("AVRO", json.dumps(schema), references)


def record(*fields: dict[str, Any], name: str = "Order", **extra: Any) -> dict[str, Any]:
    """An Avro record schema named ``name`` in namespace ``shop``."""
    return {"type": "record", "name": name, "namespace": "shop", "fields": list(fields), **extra}


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    """An Avro record field."""
    return {"name": name, "type": type_, **extra}


def jschema(schema: Any, references: dict[str, str] | None = None) -> ParsedSchema:
    """Parse a JSON Schema given as a Python structure."""
    return parse_schema("JSON", json.dumps(schema), references)


def proto(text: str, references: dict[str, str] | None = None) -> ParsedSchema:
    """Parse a Protobuf schema."""
    return parse_schema("PROTOBUF", text, references)


def kinds(messages: list[str]) -> set[str]:
    """The error types (first word) of compatibility messages."""
    return {m.split(" ", 1)[0].rstrip(":") for m in messages}


def backward(old: ParsedSchema, new: ParsedSchema) -> list[str]:
    """Messages for new reading old."""
    return check_compatibility("BACKWARD", new, [old])


def forward(old: ParsedSchema, new: ParsedSchema) -> list[str]:
    """Messages for old reading new."""
    return check_compatibility("FORWARD", new, [old])
