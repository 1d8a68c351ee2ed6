"""JSON data against a Protobuf message (the file's first), following the proto3 JSON mapping — a subset.

Checked: the datum is an object; member names are field names or their lowerCamelCase JSON names (unknown
members fail); ``null`` means "unset"; scalars by type and range (64-bit integers as numbers or decimal
strings, floats also as "NaN"/"Infinity"/"-Infinity", bytes as base64); enums by value name or number;
nested messages, repeated fields and maps recursively; at most one member per oneof; proto2 required
fields present. google.protobuf well-known types accept any JSON value. Protobuf binary payloads are not
decoded.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable
from typing import Any

from app.bus.registry.protobuf import ProtoField, ProtoMessage, ProtoModel, model, record_message
from app.bus.registry.types import ParsedSchema, ValidationFailed, child_path, index_path

logger = logging.getLogger(__name__)

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1), "sint32": (-(2**31), 2**31 - 1), "sfixed32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1), "fixed32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "sint64": (-(2**63), 2**63 - 1), "sfixed64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1), "fixed64": (0, 2**64 - 1),
}
_INT_TEXT = re.compile(r"^-?\d+$")
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})


def json_name(name: str) -> str:
    """protoc's default JSON name: lowerCamelCase of the field name."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _scalar(value: Any, kind: str, path: str) -> None:
    if kind in _INT_RANGES:
        number = value
        if isinstance(value, str) and _INT_TEXT.match(value):
            number = int(value)
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if not isinstance(number, int) or isinstance(number, bool):
            raise ValidationFailed(path, f"expected {kind}, got {type(value).__name__}")
        low, high = _INT_RANGES[kind]
        if not low <= number <= high:
            raise ValidationFailed(path, f"{value} is out of range for {kind}")
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not (isinstance(value, (int, float)) or value in _FLOAT_WORDS):
            raise ValidationFailed(path, f"expected {kind}, got {type(value).__name__}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValidationFailed(path, f"expected bool, got {type(value).__name__}")
    elif kind == "string":
        if not isinstance(value, str):
            raise ValidationFailed(path, f"expected string, got {type(value).__name__}")
    elif kind == "bytes":
        if not isinstance(value, str):
            raise ValidationFailed(path, "expected bytes as a base64 string")
        try:
            padded = value + "=" * (-len(value) % 4)
            base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationFailed(path, "bytes value is not valid base64") from exc


class _Walker:
    """Validates JSON values against fields of a resolved ProtoModel."""

    def __init__(self, resolved: ProtoModel) -> None:
        self.model = resolved

    def message(self, value: Any, message: ProtoMessage, path: str) -> None:
        if not isinstance(value, dict):
            raise ValidationFailed(path, f"expected an object (message {message.full_name})")
        fields = {f.name: f for f in message.fields.values()}
        fields.update({json_name(f.name): f for f in message.fields.values()})
        oneofs: dict[str, str] = {}
        for key, member in value.items():
            at = child_path(path, key)
            proto_field = fields.get(key)
            if proto_field is None:
                raise ValidationFailed(at, f"unknown field of message {message.full_name}")
            if member is None:
                continue
            if proto_field.oneof:
                if proto_field.oneof in oneofs:
                    raise ValidationFailed(at, f"oneof '{proto_field.oneof}' already has '{oneofs[proto_field.oneof]}'")
                oneofs[proto_field.oneof] = key
            self.field(member, proto_field, at)
        present = {fields[k].number for k, v in value.items() if v is not None}
        for proto_field in message.fields.values():
            if proto_field.label == "required" and proto_field.number not in present:
                raise ValidationFailed(child_path(path, proto_field.name), "required field is missing")

    def field(self, value: Any, proto_field: ProtoField, path: str) -> None:
        if proto_field.key_type:
            if not isinstance(value, dict):
                raise ValidationFailed(path, "expected an object (map)")
            for key, item in value.items():
                self._map_key(key, proto_field.key_type, child_path(path, key))
                self.single(item, proto_field.type, child_path(path, key))
        elif proto_field.label == "repeated":
            if not isinstance(value, list):
                raise ValidationFailed(path, "expected an array (repeated field)")
            for i, item in enumerate(value):
                self.single(item, proto_field.type, index_path(path, i))
        else:
            self.single(value, proto_field.type, path)

    @staticmethod
    def _map_key(key: str, kind: str, path: str) -> None:
        if kind == "bool" and key not in ("true", "false"):
            raise ValidationFailed(path, "map key must be 'true' or 'false'")
        if kind in _INT_RANGES:
            _scalar(key, kind, path)

    def single(self, value: Any, type_name: str, path: str) -> None:
        if value is None:
            return
        if type_name in self.model.messages:
            self.message(value, self.model.messages[type_name], path)
        elif type_name in self.model.enums:
            values = self.model.enums[type_name]
            if not (isinstance(value, str) and value in values) and not (
                isinstance(value, int) and not isinstance(value, bool)
            ):
                raise ValidationFailed(path, f"{value!r} is not a value of enum {type_name}")
        elif type_name.startswith("google.protobuf."):
            return  # well-known types have their own JSON forms; not checked
        else:
            _scalar(value, type_name, path)


def compile_protobuf_validator(parsed: ParsedSchema) -> Callable[[Any], None]:
    """Validator of JSON data against the schema's first message."""
    walker = _Walker(model(parsed))
    message = record_message(parsed)

    def validate(datum: Any) -> None:
        walker.message(datum, message, "$")

    return validate
