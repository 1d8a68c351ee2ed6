"""Compiled JSON -> Avro value converters: one closure tree per schema, built once, that also validates.

A converter returns the Python value fastavro writes for a JSON value (bytes/fixed strings become bytes,
Avro-JSON-wrapped union values are unwrapped, missing fields take their default) or raises ValidationFailed
with the JSONPath of the first mismatch. Paths are only assembled on failure, so valid data costs no string
work; union branches are pre-filtered by the JSON value's shape, so valid data raises no exceptions.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from app.bus.registry.avro import NAMED, PRIMITIVES, branch_key
from app.bus.registry.types import ValidationFailed, child_path, index_path

logger = logging.getLogger(__name__)

Convert = Callable[[Any], Any]
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
# which JSON value types can possibly match which Avro types
_SHAPES: dict[type, frozenset[str]] = {
    dict: frozenset({"record", "error", "map"}),
    list: frozenset({"array"}),
    str: frozenset({"string", "bytes", "enum", "fixed"}),
    bool: frozenset({"boolean"}),
    int: frozenset({"int", "long", "float", "double"}),
    float: frozenset({"float", "double"}),
    type(None): frozenset({"null"}),
}


class Mismatch(Exception):  # noqa: N818 - internal signal, turned into ValidationFailed at the top
    """A value does not fit; ``parts`` collects the location innermost-first as the error unwinds."""

    def __init__(self, message: str, *parts: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.parts: list[str | int] = list(parts)


def describe(datum: Any) -> str:
    """A short JSON-ish description of a value's kind for messages."""
    return _KINDS.get(type(datum), type(datum).__name__)


_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
          float: "a number", type(None): "null"}


def run(convert: Convert, datum: Any) -> Any:
    """Apply a converter, turning a Mismatch into ValidationFailed with a JSONPath."""
    try:
        return convert(datum)
    except Mismatch as exc:
        path = "$"
        for part in reversed(exc.parts):
            path = index_path(path, part) if isinstance(part, int) else child_path(path, part)
        raise ValidationFailed(path, exc.message) from None


def _null(d: Any) -> Any:
    if d is None:
        return None
    raise Mismatch(f"expected null, got {describe(d)}")


def _boolean(d: Any) -> Any:
    if d is True or d is False:
        return d
    raise Mismatch(f"expected boolean, got {describe(d)}")


def _integer(kind: str, low: int, high: int) -> Convert:
    def convert(d: Any) -> Any:
        if isinstance(d, int) and not isinstance(d, bool):
            if low <= d <= high:
                return d
            raise Mismatch(f"{d} is out of range for Avro {kind}")
        raise Mismatch(f"expected {kind}, got {describe(d)}")

    return convert


def _floating(kind: str) -> Convert:
    def convert(d: Any) -> Any:
        if isinstance(d, (int, float)) and not isinstance(d, bool):
            return d
        raise Mismatch(f"expected {kind}, got {describe(d)}")

    return convert


def _string(d: Any) -> Any:
    if isinstance(d, str):
        return d
    raise Mismatch(f"expected string, got {describe(d)}")


def to_bytes(d: Any, what: str) -> bytes:
    """Bytes of an Avro-JSON string (one code point 0-255 per byte); bytes pass through."""
    if isinstance(d, (bytes, bytearray)):
        return bytes(d)
    if not isinstance(d, str):
        raise Mismatch(f"expected {what} (a string of code points 0-255), got {describe(d)}")
    try:
        return d.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise Mismatch(f"{what} string has a character above U+00FF at {exc.start}") from None


_PRIMITIVE_CONVERTERS: dict[str, Convert] = {
    "null": _null,
    "boolean": _boolean,
    "int": _integer("int", *_INT32),
    "long": _integer("long", *_INT64),
    "float": _floating("float"),
    "double": _floating("double"),
    "string": _string,
    "bytes": lambda d: to_bytes(d, "bytes"),
}


def kind_of(schema: Any) -> str:
    """The Avro type name of a normalised schema node (``union`` for lists)."""
    return schema if isinstance(schema, str) else "union" if isinstance(schema, list) else schema["type"]


class Builder:
    """Builds converters over one set of named types; ``defaults`` builds the flavour for schema defaults."""

    def __init__(self, names: Mapping[str, Any], *, defaults: bool = False) -> None:
        self.names = names
        self.defaults = defaults
        self.cells: dict[str, list[Convert | None]] = {}
        self._default_builder: Builder | None = self if defaults else None

    def _resolve(self, schema: Any) -> Any:
        return self.names[schema] if isinstance(schema, str) and schema in self.names else schema

    def build(self, schema: Any) -> Convert:
        """The converter of a normalised schema node."""
        if isinstance(schema, str) and schema in PRIMITIVES:
            return _PRIMITIVE_CONVERTERS[schema]
        schema = self._resolve(schema)
        if isinstance(schema, list):
            return self.build(schema[0]) if self.defaults else self._union(schema)
        kind = schema["type"]
        if kind in PRIMITIVES:
            return _PRIMITIVE_CONVERTERS[kind]
        if kind in NAMED:
            return self._named(schema)
        if kind == "array":
            return self._array(self.build(schema["items"]))
        if kind == "map":
            return self._map(self.build(schema["values"]))
        raise ValueError(f"unsupported Avro type {kind!r}")

    def _named(self, schema: dict[str, Any]) -> Convert:
        name = schema["name"]
        cell = self.cells.get(name)
        if cell is not None:
            # why a cell: a recursive type refers to its own converter before that converter exists
            return cell[0] if cell[0] is not None else lambda d: cell[0](d)  # type: ignore[misc]
        cell = self.cells[name] = [None]
        kind = schema["type"]
        if kind == "enum":
            converter = _enum(name, schema["symbols"])
        elif kind == "fixed":
            converter = _fixed(name, schema["size"])
        else:
            converter = self._record(schema)
        cell[0] = converter
        return converter

    def _default(self, schema: Any, value: Any) -> Any:
        if self._default_builder is None:
            self._default_builder = Builder(self.names, defaults=True)
        return self._default_builder.build(schema)(value)

    def _record(self, schema: dict[str, Any]) -> Convert:
        name = schema["name"]
        fields = []
        for field in schema["fields"]:
            converter = self.build(field["type"])
            has_default = "default" in field
            default = self._default(field["type"], field["default"]) if has_default else None
            nullable = self._accepts_null(field["type"])
            fields.append((field["name"], converter, has_default, default, nullable))

        def convert(d: Any) -> Any:
            if not isinstance(d, dict):
                raise Mismatch(f"expected an object (record {name}), got {describe(d)}")
            out = {}
            for field_name, field_convert, has_default, default, nullable in fields:
                if field_name in d:
                    try:
                        out[field_name] = field_convert(d[field_name])
                    except Mismatch as exc:
                        exc.parts.append(field_name)
                        raise
                elif has_default:
                    out[field_name] = default
                elif nullable:
                    out[field_name] = None
                else:
                    raise Mismatch("is required (the field has no default)", field_name)
            return out

        return convert

    def _accepts_null(self, schema: Any) -> bool:
        schema = self._resolve(schema)
        branches = schema if isinstance(schema, list) else [schema]
        return any(kind_of(self._resolve(b)) == "null" for b in branches)

    @staticmethod
    def _array(item: Convert) -> Convert:
        def convert(d: Any) -> Any:
            if not isinstance(d, list):
                raise Mismatch(f"expected an array, got {describe(d)}")
            out = []
            for i, value in enumerate(d):
                try:
                    out.append(item(value))
                except Mismatch as exc:
                    exc.parts.append(i)
                    raise
            return out

        return convert

    @staticmethod
    def _map(value_convert: Convert) -> Convert:
        def convert(d: Any) -> Any:
            if not isinstance(d, dict):
                raise Mismatch(f"expected an object (map), got {describe(d)}")
            out = {}
            for key, value in d.items():
                try:
                    out[key] = value_convert(value)
                except Mismatch as exc:
                    exc.parts.append(key)
                    raise
            return out

        return convert

    def _union(self, branches: list[Any]) -> Convert:
        resolved = [self._resolve(b) for b in branches]
        converters = [self.build(b) for b in branches]
        by_shape = {shape: [c for b, c in zip(resolved, converters, strict=True) if kind_of(b) in kinds]
                    for shape, kinds in _SHAPES.items()}
        by_name: dict[str, Convert] = {}
        for branch, converter in zip(resolved, converters, strict=True):
            key = branch_key(branch)
            by_name.setdefault(key, converter)
            by_name.setdefault(key.rpartition(".")[2], converter)
        label = ", ".join(branch_key(b) for b in resolved)

        def convert(d: Any) -> Any:
            errors = []
            for candidate in by_shape.get(type(d), converters):
                try:
                    return candidate(d)
                except Mismatch as exc:
                    errors.append(exc)
            if isinstance(d, dict) and len(d) == 1:
                # the Avro JSON encoding of a union value: {"<branch type or name>": value}
                ((key, value),) = d.items()
                chosen = by_name.get(key)
                if chosen is not None:
                    try:
                        return chosen(value)
                    except Mismatch as exc:
                        exc.parts.append(key)
                        raise
            # why: ["null", Record] given a bad object should report the bad field, not "no branch matched"
            if len(errors) == 1:
                raise errors[0]
            raise Mismatch(f"{describe(d)} matches no branch of union [{label}]")

        return convert


def _enum(name: str, symbols: list[str]) -> Convert:
    allowed = frozenset(symbols)

    def convert(d: Any) -> Any:
        if isinstance(d, str) and d in allowed:
            return d
        raise Mismatch(f"{d!r} is not a symbol of enum {name} {symbols}")

    return convert


def _fixed(name: str, size: int) -> Convert:
    def convert(d: Any) -> Any:
        value = to_bytes(d, f"fixed {name}")
        if len(value) != size:
            raise Mismatch(f"fixed {name} needs {size} bytes, got {len(value)}")
        return value

    return convert


def to_avro(datum: Any, schema: Any, names: Mapping[str, Any], *, defaults: bool = False) -> Any:
    """One-off conversion (schema checks at parse time); hot paths keep a built converter instead."""
    try:
        converter = Builder(names, defaults=defaults).build(schema)
    except Mismatch as exc:
        raise ValidationFailed("$", f"a nested default is invalid: {exc.message}") from None
    return run(converter, datum)


def has_bytes(schema: Any, names: Mapping[str, Any], seen: set[str] | None = None) -> bool:
    """Whether values of the schema can contain bytes (bytes or fixed), which JSON carries as strings."""
    seen = set() if seen is None else seen
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema == "bytes"
        if schema in seen:
            return False
        seen.add(schema)
        return has_bytes(names[schema], names, seen)
    if isinstance(schema, list):
        return any(has_bytes(b, names, seen) for b in schema)
    kind = schema["type"]
    if kind in ("bytes", "fixed"):
        return True
    if kind in ("record", "error"):
        seen.add(schema["name"])
        return any(has_bytes(f["type"], names, seen) for f in schema["fields"])
    if kind == "array":
        return has_bytes(schema["items"], names, seen)
    if kind == "map":
        return has_bytes(schema["values"], names, seen)
    return False
