"""Avro data as JSON: validation with precise paths, and Avro binary encode/decode of JSON values.

JSON mapping (the event's ``data`` is JSON, Avro needs typed values):
- unions take the plain value (``"x"`` for ``["null","string"]``); the Avro JSON encoding
  ``{"string": "x"}`` is accepted too. A value is written with the first branch that accepts it.
- ``bytes`` and ``fixed`` are strings of code points 0-255, one per byte (the Avro JSON encoding).
- logical types are their underlying type (``timestamp-millis`` is a long, ``decimal`` is bytes).
- record members the schema does not name are ignored; a missing field takes its default, else null.
Decoding returns the same shapes, so ``avro_decode`` output validates and re-encodes unchanged.

Validation speed: the schema is also compiled once into an equivalent JSON Schema (``avro_json_schema``, draft 4
so that ``1.0`` is not an integer) checked by jsonschema-rs, which answers for the common valid case in a
couple of µs. It is built to accept a subset of what the exact check accepts (it leaves out the Avro JSON
encoding of union values, ``{"string": "x"}``, and rejects NaN), so whenever it says invalid the exact
fastavro + converter check runs as before and has the final word (same path, same message).
"""
from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Callable
from typing import Any

import jsonschema_rs
from fastavro import parse_schema as fastavro_parse
from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError
from fastavro.validation import validate as fastavro_validate

from app.bus.registry import avro
from app.bus.registry.avro_convert import _INT32, _INT64, Builder, Convert, has_bytes, kind_of, run
from app.bus.registry.types import ParsedSchema, ValidationFailed, child_path

logger = logging.getLogger(__name__)


def _strip_logical(schema: Any) -> Any:
    """The schema with logical types removed, so values are their underlying JSON-able types."""
    if isinstance(schema, list):
        return [_strip_logical(b) for b in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: v for k, v in schema.items() if k != "logicalType"}
    if "fields" in out:
        out["fields"] = [{**f, "type": _strip_logical(f["type"])} for f in out["fields"]]
    for key in ("items", "values"):
        if key in out:
            out[key] = _strip_logical(out[key])
    if set(out) == {"type"} and out["type"] in avro.PRIMITIVES:
        return out["type"]
    return out


@functools.lru_cache(maxsize=512)
def runtime_schema(parsed: ParsedSchema) -> Any:
    """The fastavro schema used to validate, write and read JSON values: normalised, logical types removed."""
    ordered = avro._parse_references(parsed.references, {})
    walker = avro._Normaliser()
    named: dict[str, Any] = {}
    for name, ref in ordered:
        ref_schema = _strip_logical(walker.norm(ref, "", f"reference {name!r}"))
        fastavro_parse(ref_schema, named, _ignore_default_error=True)
    main = _strip_logical(walker.norm(json.loads(parsed.raw), "", "/"))
    # why expand: only a record/enum/fixed at the top carries fastavro's table of referenced named types
    return fastavro_parse(main, named, expand=not isinstance(main, dict), _ignore_default_error=True)


@functools.lru_cache(maxsize=512)
def converter(parsed: ParsedSchema) -> tuple[Convert, bool]:
    """The compiled JSON -> Avro converter of a schema, and whether its values can hold bytes."""
    main, names = avro.model(parsed)
    return Builder(names).build(main), has_bytes(main, names)


def _fastavro_failure(error: ValidationError) -> ValidationFailed:
    """Best-effort JSONPath from fastavro's dotted ``namespace.Record.field`` error location."""
    first = error.errors[0] if error.errors else None
    field = first.field if first else ""
    return ValidationFailed(child_path("$", field.rpartition(".")[2]) if field else "$", str(first or error))


_LATIN1 = "^[\\x00-\\xff]*$"  # bytes and fixed travel as strings of code points 0-255
_INTEGERS = {"int": _INT32, "long": _INT64}
_PLAIN = {"null": "null", "boolean": "boolean", "float": "number", "double": "number", "string": "string"}


class _JsonSchemaOf:
    """JSON Schema (draft 4) of the JSON mapping of normalised Avro schemas; named records live in definitions."""

    def __init__(self, names: dict[str, Any]) -> None:
        self.names = names
        self.definitions: dict[str, Any] = {}

    def of(self, schema: Any) -> dict[str, Any]:
        if isinstance(schema, str) and schema in self.names:
            schema = self.names[schema]
        if isinstance(schema, list):
            return {"anyOf": [self.of(branch) for branch in schema]}
        kind = kind_of(schema)
        if kind in _INTEGERS:
            low, high = _INTEGERS[kind]
            return {"type": "integer", "minimum": low, "maximum": high}
        if kind in _PLAIN:
            return {"type": _PLAIN[kind]}
        if kind == "bytes":
            return {"type": "string", "pattern": _LATIN1}
        if kind == "fixed":
            return {"type": "string", "minLength": schema["size"], "maxLength": schema["size"], "pattern": _LATIN1}
        if kind == "enum":
            return {"type": "string", "enum": list(schema["symbols"])}
        if kind == "array":
            return {"type": "array", "items": self.of(schema["items"])}
        if kind == "map":
            return {"type": "object", "additionalProperties": self.of(schema["values"])}
        if kind in ("record", "error"):
            name = schema["name"]
            if name not in self.definitions:
                self.definitions[name] = {}  # why first: a record may contain itself
                self.definitions[name] = self._record(schema)
            return {"$ref": "#/definitions/" + name.replace("~", "~0").replace("/", "~1")}
        raise ValueError(f"unsupported Avro type {kind!r}")

    def _record(self, schema: dict[str, Any]) -> dict[str, Any]:
        properties = {f["name"]: self.of(f["type"]) for f in schema["fields"]}
        out: dict[str, Any] = {"type": "object", "properties": properties}
        # a missing field takes its default, else null when the type allows it; otherwise it is required
        required = [f["name"] for f in schema["fields"] if "default" not in f and not self._nullable(f["type"])]
        if required:
            out["required"] = required
        return out

    def _nullable(self, schema: Any) -> bool:
        branches = schema if isinstance(schema, list) else [schema]
        return any(kind_of(self.names.get(b, b) if isinstance(b, str) else b) == "null" for b in branches)


@functools.lru_cache(maxsize=512)
def avro_json_schema(parsed: ParsedSchema) -> dict[str, Any]:
    """A JSON Schema accepting only JSON data the exact Avro check accepts (see the module docstring)."""
    main, names = avro.model(parsed)
    builder = _JsonSchemaOf(names)
    root = builder.of(main)
    if builder.definitions:
        root = {**root, "definitions": builder.definitions}
    return {"$schema": "http://json-schema.org/draft-04/schema#", **root}


def _rust_check(parsed: ParsedSchema) -> Callable[[Any], bool] | None:
    """jsonschema-rs ``is_valid`` of the JSON Schema equivalent, or None when it cannot be built."""
    try:
        return jsonschema_rs.Draft4Validator(avro_json_schema(parsed), offline=True).is_valid
    except (jsonschema_rs.ValidationError, ValueError, TypeError, KeyError, RecursionError) as exc:
        logger.warning("no jsonschema-rs pre-check for Avro schema %s: %s", parsed.fingerprint[:12], exc)
        return None


def compile_avro_validator(parsed: ParsedSchema) -> Callable[[Any], None]:
    """Validator of JSON data against an Avro schema: jsonschema-rs passes valid data, else the exact check decides.

    The exact check: fastavro decides, the compiled converter locates errors.
    """
    schema = runtime_schema(parsed)
    convert, holds_bytes = converter(parsed)
    # why: without bytes/fixed, plain JSON is exactly what fastavro validates, so its Cython check goes first
    fast = not holds_bytes
    is_valid = _rust_check(parsed)

    def validate(datum: Any) -> None:
        if is_valid is not None:
            try:
                if is_valid(datum):
                    return
            except (ValueError, TypeError, OverflowError, RecursionError):
                pass  # not JSON data (bytes, non-string keys): the exact check decides
        if fast and fastavro_validate(datum, schema, raise_errors=False):
            return
        converted = run(convert, datum)  # raises ValidationFailed with the path of the first mismatch
        # why two calls: raise_errors=True builds error objects for every rejected union branch (4x slower)
        if fastavro_validate(converted, schema, raise_errors=False):
            return
        try:
            fastavro_validate(converted, schema, raise_errors=True)
        except ValidationError as exc:
            raise _fastavro_failure(exc) from None
        raise ValidationFailed("$", "rejected by fastavro")

    return validate


def encode(parsed: ParsedSchema, datum: Any) -> bytes:
    """Avro binary of a JSON datum; raises ValidationFailed when the datum does not fit the schema."""
    buf = io.BytesIO()
    schemaless_writer(buf, runtime_schema(parsed), run(converter(parsed)[0], datum))
    return buf.getvalue()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return value


def decode(parsed: ParsedSchema, payload: bytes) -> Any:
    """JSON-able value of an Avro binary payload written with ``parsed``; ValueError when it is malformed."""
    buf = io.BytesIO(payload)
    try:
        value = schemaless_reader(buf, runtime_schema(parsed), None)
    except (EOFError, StopIteration, IndexError, KeyError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError(f"invalid Avro payload for schema {parsed.fingerprint[:12]}: {exc!r}") from exc
    if buf.tell() != len(payload):
        raise ValueError(f"invalid Avro payload: {len(payload) - buf.tell()} trailing bytes")
    return _jsonable(value) if converter(parsed)[1] else value
