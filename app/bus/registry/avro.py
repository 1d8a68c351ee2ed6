"""Avro schemas: parse with fastavro, check the spec's rules fastavro leaves out, normalise and fingerprint.

Canonical form: the schema as canonical JSON (sorted keys, no whitespace) after normalisation. Named types
carry their full name (``namespace`` folded into ``name``), aliases are fully qualified, a primitive written
as ``{"type": "int"}`` becomes ``"int"`` and a named type's later uses are its full name. Docs, defaults,
aliases, order, logical types and custom properties are kept: like Confluent (which dedups on the Java
``Schema.toString()``), two schemas that differ in any of those are different schemas, while whitespace,
key order and namespace spelling do not matter.
"""
from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from fastavro import parse_schema as fastavro_parse
from fastavro.schema import SchemaParseException, UnknownType

from app.bus.registry.types import ParsedSchema, SchemaError, UnresolvedReference, fingerprint_of

logger = logging.getLogger(__name__)

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ORDERS = frozenset({"ascending", "descending", "ignore"})


def canonical_json(value: Any) -> str:
    """Canonical JSON text: sorted keys, no insignificant whitespace, UTF-8 characters kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _load(text: str, what: str) -> Any:
    """Parse JSON text or raise SchemaError naming what was being read."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SchemaError(f"invalid Avro schema{what}: not valid JSON: {exc}") from exc


class _Normaliser:
    """Walks Avro schemas, registering named types (full name -> normalised definition) as it goes."""

    def __init__(self) -> None:
        self.names: dict[str, dict[str, Any]] = {}

    def _check_name(self, name: Any, where: str) -> None:
        if not isinstance(name, str) or not all(_NAME_RE.match(part) for part in name.split(".")):
            raise SchemaError(f"invalid Avro name {name!r} at {where}: names match [A-Za-z_][A-Za-z0-9_]*")

    def _full_name(self, name: Any, namespace: str | None, where: str) -> str:
        self._check_name(name, where)
        if "." in name or not namespace:
            return name
        self._check_name(namespace, where)
        return f"{namespace}.{name}"

    def _reference(self, name: str, namespace: str, where: str) -> str:
        # why: a bare name resolves in the enclosing namespace first, then in the null namespace (spec)
        candidates = [name] if "." in name else ([f"{namespace}.{name}"] if namespace else []) + [name]
        for candidate in candidates:
            if candidate in self.names:
                return candidate
        raise UnresolvedReference(
            f"unknown Avro type '{name}' at {where}: not defined in the schema or its references"
        )

    def norm(self, schema: Any, namespace: str, where: str) -> Any:
        """The normalised form of ``schema`` found at ``where`` within ``namespace``."""
        if isinstance(schema, str):
            return schema if schema in PRIMITIVES else self._reference(schema, namespace, where)
        if isinstance(schema, list):
            return self._union(schema, namespace, where)
        if not isinstance(schema, dict):
            raise SchemaError(f"invalid Avro schema at {where}: expected a name, union or object, got {schema!r}")
        kind = schema.get("type")
        if isinstance(kind, (list, dict)):
            return self.norm(kind, namespace, where)
        if not isinstance(kind, str):
            raise SchemaError(f"invalid Avro schema at {where}: missing or invalid 'type'")
        extra = {k: v for k, v in schema.items() if k != "type"}
        if kind in PRIMITIVES:
            return {"type": kind, **extra} if extra else kind
        if kind in ("record", "error"):
            return self._record(schema, kind, namespace, where)
        if kind == "enum":
            return self._enum(schema, namespace, where)
        if kind == "fixed":
            return self._fixed(schema, namespace, where)
        if kind == "array":
            if "items" not in schema:
                raise SchemaError(f"invalid Avro array at {where}: missing 'items'")
            return {**extra, "type": "array", "items": self.norm(schema["items"], namespace, f"{where}/items")}
        if kind == "map":
            if "values" not in schema:
                raise SchemaError(f"invalid Avro map at {where}: missing 'values'")
            return {**extra, "type": "map", "values": self.norm(schema["values"], namespace, f"{where}/values")}
        # {"type": "com.example.Name"}: a reference written as an object
        return self._reference(kind, namespace, where)

    def _union(self, branches: list[Any], namespace: str, where: str) -> list[Any]:
        out = [self.norm(b, namespace, f"{where}/{i}") for i, b in enumerate(branches)]
        seen: set[str] = set()
        for i, branch in enumerate(out):
            if isinstance(branch, list):
                raise SchemaError(f"invalid Avro union at {where}: unions may not immediately contain unions")
            key = branch_key(branch)
            if key in seen:
                raise SchemaError(f"invalid Avro union at {where}/{i}: duplicate branch '{key}'")
            seen.add(key)
        return out

    def _named(self, schema: dict[str, Any], namespace: str, where: str) -> tuple[str, dict[str, Any]]:
        explicit = schema.get("namespace")
        if explicit is not None and not isinstance(explicit, str):
            raise SchemaError(f"invalid Avro namespace at {where}: {explicit!r}")
        full = self._full_name(schema.get("name"), namespace if explicit is None else explicit, where)
        if full in self.names:
            raise SchemaError(f"invalid Avro schema at {where}: named type '{full}' is defined twice")
        own_ns = full.rpartition(".")[0]
        out: dict[str, Any] = {k: v for k, v in schema.items() if k not in ("namespace", "aliases", "fields")}
        out["name"] = full
        if "aliases" in schema:
            aliases = schema["aliases"]
            if not isinstance(aliases, list):
                raise SchemaError(f"invalid Avro aliases at {where}: expected a list")
            out["aliases"] = [self._full_name(a, own_ns, f"{where}/aliases") for a in aliases]
        # why register before the children: a record may refer to itself (linked lists, trees)
        self.names[full] = out
        return own_ns, out

    def _record(self, schema: dict[str, Any], kind: str, namespace: str, where: str) -> dict[str, Any]:
        own_ns, out = self._named(schema, namespace, where)
        fields = schema.get("fields")
        if not isinstance(fields, list):
            raise SchemaError(f"invalid Avro record '{out['name']}' at {where}: 'fields' must be a list")
        seen: set[str] = set()
        out_fields = []
        for i, field in enumerate(fields):
            at = f"{where}/fields/{i}"
            if not isinstance(field, dict) or "type" not in field:
                raise SchemaError(f"invalid Avro field at {at}: expected an object with 'name' and 'type'")
            name = field.get("name")
            self._check_name(name, at)
            if "." in name:
                raise SchemaError(f"invalid Avro field name {name!r} at {at}")
            if name in seen:
                raise SchemaError(f"invalid Avro record '{out['name']}': duplicate field '{name}'")
            seen.add(name)
            if "order" in field and field["order"] not in _ORDERS:
                raise SchemaError(f"invalid Avro field order {field['order']!r} at {at}")
            norm_field = {**field, "type": self.norm(field["type"], own_ns, f"{at}/type")}
            out_fields.append(norm_field)
        out["type"] = kind
        out["fields"] = out_fields
        return out

    def _enum(self, schema: dict[str, Any], namespace: str, where: str) -> dict[str, Any]:
        _, out = self._named(schema, namespace, where)
        symbols = schema.get("symbols")
        if not isinstance(symbols, list):
            raise SchemaError(f"invalid Avro enum '{out['name']}' at {where}: 'symbols' must be a list")
        for symbol in symbols:
            self._check_name(symbol, f"{where}/symbols")
        if len(set(symbols)) != len(symbols):
            raise SchemaError(f"invalid Avro enum '{out['name']}': duplicate symbols")
        if "default" in schema and schema["default"] not in symbols:
            raise SchemaError(f"invalid Avro enum '{out['name']}': default {schema['default']!r} is not a symbol")
        return out

    def _fixed(self, schema: dict[str, Any], namespace: str, where: str) -> dict[str, Any]:
        _, out = self._named(schema, namespace, where)
        size = schema.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise SchemaError(f"invalid Avro fixed '{out['name']}' at {where}: 'size' must be a non-negative integer")
        return out


def branch_key(schema: Any) -> str:
    """How a union tells its branches apart: the type name, or the full name for named types."""
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict):
        kind = schema["type"]
        return schema["name"] if kind in NAMED else kind
    return "union"


def _check_defaults(schema: Any, names: Mapping[str, Any], seen: set[str]) -> None:
    """Every record field default must be valid for the field's type (for unions: the first branch)."""
    from app.bus.registry.avro_convert import to_avro
    from app.bus.registry.types import ValidationFailed

    if isinstance(schema, str):
        if schema in names and schema not in seen:
            seen.add(schema)
            _check_defaults(names[schema], names, seen)
        return
    if isinstance(schema, list):
        for branch in schema:
            _check_defaults(branch, names, seen)
        return
    kind = schema["type"]
    if kind in ("record", "error"):
        seen.add(schema["name"])
        for field in schema["fields"]:
            if "default" in field:
                target = field["type"][0] if isinstance(field["type"], list) else field["type"]
                try:
                    to_avro(field["default"], target, names, defaults=True)
                except ValidationFailed as exc:
                    hint = " (a union's default is for its first branch)" if isinstance(field["type"], list) else ""
                    raise SchemaError(
                        f"invalid default for field '{field['name']}' of '{schema['name']}': {exc.message}{hint}"
                    ) from exc
            _check_defaults(field["type"], names, seen)
    elif kind == "array":
        _check_defaults(schema["items"], names, seen)
    elif kind == "map":
        _check_defaults(schema["values"], names, seen)


def _parse_references(references: Mapping[str, str], named: dict[str, Any]) -> list[tuple[str, Any]]:
    """Parse referenced schemas in dependency order (a reference may use another); returns (name, json) pairs."""
    pending = {name: _load(text, f" (reference '{name}')") for name, text in references.items()}
    ordered: list[tuple[str, Any]] = []
    unknown: dict[str, str] = {}
    while pending:
        progressed = False
        for name in list(pending):
            trial = dict(named)
            try:
                fastavro_parse(pending[name], trial, _ignore_default_error=True)
            except UnknownType as exc:
                unknown[name] = str(exc.name)
                continue
            except (SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as exc:
                raise SchemaError(f"invalid Avro schema (reference '{name}'): {exc}") from exc
            named.update(trial)
            ordered.append((name, pending.pop(name)))
            progressed = True
        if not progressed:
            detail = ", ".join(f"'{n}' uses unknown type '{unknown.get(n, '?')}'" for n in sorted(pending))
            raise UnresolvedReference(f"Avro references cannot be resolved: {detail}")
    return ordered


def normalise(raw: Any, references: list[tuple[str, Any]]) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Normalised main schema and every named type (main and references) by full name."""
    walker = _Normaliser()
    for name, ref in references:
        walker.norm(ref, "", f"reference '{name}'")
    main = walker.norm(raw, "", "/")
    return main, walker.names


def parse_avro(text: str, references: Mapping[str, str]) -> ParsedSchema:
    """Parse an Avro schema (with its references) into a ParsedSchema; raises SchemaError when invalid."""
    raw = _load(text, "")
    named: dict[str, Any] = {}
    ordered = _parse_references(references, named)
    try:
        # why first: our walker's messages say where the problem is; fastavro's checks follow
        main, names = normalise(raw, ordered)
    except RecursionError as exc:
        raise SchemaError("invalid Avro schema: nested too deeply") from exc
    try:
        parsed = fastavro_parse(raw, named, _ignore_default_error=True)
    except UnknownType as exc:
        raise UnresolvedReference(
            f"unknown Avro type '{exc.name}': not defined in the schema or its references"
        ) from exc
    except (SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SchemaError(f"invalid Avro schema: {exc}") from exc
    except RecursionError as exc:
        raise SchemaError("invalid Avro schema: nested too deeply") from exc
    _check_defaults(main, names, set())
    canonical = canonical_json(main)
    return ParsedSchema(
        schema_type="AVRO",
        raw=text,
        canonical=canonical,
        fingerprint=fingerprint_of("AVRO", canonical, references),
        parsed=parsed,
        references=dict(references),
    )


@functools.lru_cache(maxsize=512)
def model(parsed: ParsedSchema) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Normalised schema and named types of a parsed Avro schema (cached: compatibility and validators use it)."""
    named: dict[str, Any] = {}
    ordered = _parse_references(parsed.references, named)
    return normalise(json.loads(parsed.raw), ordered)
