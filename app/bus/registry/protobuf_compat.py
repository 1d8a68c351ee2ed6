"""Protobuf reader/writer compatibility: a documented subset of Confluent's Protobuf rules.

Checked (Confluent difference names where one exists): PACKAGE_CHANGED, MESSAGE_REMOVED, FIELD_KIND_CHANGED
(scalar/message/map or repeated/singular), FIELD_SCALAR_KIND_CHANGED (outside the wire-compatible groups
int32/uint32/int64/uint64/bool, sint32/sint64, fixed32/sfixed32, fixed64/sfixed64, string/bytes),
FIELD_NAMED_TYPE_CHANGED, ONEOF_FIELD_REMOVED, MULTIPLE_FIELDS_MOVED_TO_ONEOF, REQUIRED_FIELD_ADDED
(the reader requires a field the writer may not send), and FIELD_NUMBER_CHANGED (our addition: a field
kept its name but got a new number, which silently drops its data). Added/removed optional fields, renamed
fields and enum value changes are compatible, as in Confluent.
"""
from __future__ import annotations

import logging

from app.bus.registry.protobuf import ProtoField, ProtoMessage, model
from app.bus.registry.types import ParsedSchema

logger = logging.getLogger(__name__)

Issue = tuple[str, str, str]
_WIRE_GROUPS = (
    frozenset({"int32", "uint32", "int64", "uint64", "bool"}),
    frozenset({"sint32", "sint64"}),
    frozenset({"fixed32", "sfixed32"}),
    frozenset({"fixed64", "sfixed64"}),
    frozenset({"string", "bytes"}),
)


def _scalars_compatible(a: str, b: str) -> bool:
    return a == b or any(a in group and b in group for group in _WIRE_GROUPS)


def check_protobuf(reader: ParsedSchema, writer: ParsedSchema) -> list[Issue]:
    """Issues preventing ``reader`` from reading messages written with ``writer`` (empty = compatible)."""
    r_model, w_model = model(reader), model(writer)
    issues: list[Issue] = []
    if r_model.package != w_model.package:
        issues.append(("PACKAGE_CHANGED", "/", f"package changed from '{w_model.package}' to '{r_model.package}'"))
    for name in w_model.own:
        r_message = r_model.messages.get(name)
        if r_message is None:
            issues.append(("MESSAGE_REMOVED", f"/{name}", f"the reader has no message '{name}'"))
            continue
        issues.extend(_message(r_message, w_model.messages[name]))
    return issues


def _message(reader: ProtoMessage, writer: ProtoMessage) -> list[Issue]:
    issues: list[Issue] = []
    path = f"/{reader.full_name}"
    for number, w_field in writer.fields.items():
        r_field = reader.fields.get(number)
        if r_field is None:
            if w_field.oneof:
                issues.append(("ONEOF_FIELD_REMOVED", f"{path}/{number}",
                               f"field '{w_field.name}' = {number} of oneof '{w_field.oneof}' is gone from the reader"))
            continue
        issues.extend(_field(r_field, w_field, f"{path}/{number}"))
    by_name = {f.name: f for f in reader.fields.values()}
    for w_field in writer.fields.values():
        moved = by_name.get(w_field.name)
        if moved is not None and moved.number != w_field.number and w_field.number not in reader.fields:
            issues.append(("FIELD_NUMBER_CHANGED", f"{path}/{moved.number}",
                           f"field '{w_field.name}' was renumbered from {w_field.number} to {moved.number}"))
    for number, r_field in reader.fields.items():
        w_field = writer.fields.get(number)
        if r_field.label == "required" and (w_field is None or w_field.label != "required"):
            issues.append(("REQUIRED_FIELD_ADDED", f"{path}/{number}",
                           f"the reader requires field '{r_field.name}' = {number}, which the writer may not send"))
    moved_in: dict[str, list[str]] = {}
    for number, r_field in reader.fields.items():
        w_field = writer.fields.get(number)
        if r_field.oneof and w_field is not None and not w_field.oneof:
            moved_in.setdefault(r_field.oneof, []).append(r_field.name)
    for oneof, names in moved_in.items():
        if len(names) > 1:
            issues.append(("MULTIPLE_FIELDS_MOVED_TO_ONEOF", f"{path}/{oneof}",
                           f"existing fields {names} were moved into oneof '{oneof}'"))
    return issues


def _field(reader: ProtoField, writer: ProtoField, path: str) -> list[Issue]:
    where = f"field {writer.number} ('{writer.name}')"
    if reader.kind != writer.kind or (reader.label == "repeated") != (writer.label == "repeated"):
        return [("FIELD_KIND_CHANGED", path, f"{where} changed from {_describe(writer)} to {_describe(reader)}")]
    if reader.kind == "map":
        if not _scalars_compatible(reader.key_type or "", writer.key_type or "") or reader.type != writer.type:
            return [("FIELD_KIND_CHANGED", path, f"{where} changed from {_describe(writer)} to {_describe(reader)}")]
        return []
    if reader.kind == "scalar":
        if not _scalars_compatible(reader.type, writer.type):
            return [("FIELD_SCALAR_KIND_CHANGED", path, f"{where} changed type from {writer.type} to {reader.type}")]
        return []
    if reader.type != writer.type:
        return [("FIELD_NAMED_TYPE_CHANGED", path, f"{where} changed type from {writer.type} to {reader.type}")]
    return []


def _describe(proto_field: ProtoField) -> str:
    if proto_field.key_type:
        return f"map<{proto_field.key_type}, {proto_field.type}>"
    return f"repeated {proto_field.type}" if proto_field.label == "repeated" else proto_field.type
