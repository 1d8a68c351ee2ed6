"""JSON Schema compatibility with Confluent's semantics: can the reader schema accept all the writer accepts?

Each incompatibility carries a Confluent ``Difference.Type`` name (PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL,
REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL, TYPE_NARROWED, MAX_LENGTH_DECREASED, ...) and a JSON
pointer (``#/properties/total``) into the schema. Only the changes Confluent counts as incompatible are
reported. A content model is open (additionalProperties absent/true), closed (false) or partially open
(an additionalProperties schema or patternProperties). Not compared: ``format``, ``contains``,
``patternProperties`` added or removed, ``if/then/else``, ``propertyNames``, ``unevaluated*`` beyond
treating ``unevaluatedProperties: false`` as closed.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from app.bus.registry.json_schema import bundled, canonical_json, resolve_pointer
from app.bus.registry.jsonschema_rules import ANNOTATIONS, ArrayRules, NumberRules, StringRules
from app.bus.registry.types import ParsedSchema

logger = logging.getLogger(__name__)

Issue = tuple[str, str, str]
_MAX_DEPTH = 64


def check_json(reader: ParsedSchema, writer: ParsedSchema) -> list[Issue]:
    """Issues preventing ``reader`` from accepting every document ``writer`` accepts (empty = compatible)."""
    return _Diff(bundled(writer), bundled(reader)).compare(bundled(writer), bundled(reader), "#", 0)


def json_types(schema: Any) -> set[str] | None:
    """The JSON types a schema allows (from ``type``, else inferred from ``enum``/``const``); None = any."""
    if not isinstance(schema, dict):
        return None
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return set(declared)
    values = enum_values(schema)
    return {_type_of(v) for v in values} if values is not None else None


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "object")


def enum_values(schema: dict[str, Any]) -> list[Any] | None:
    """Allowed values from ``enum`` or ``const``; None when unrestricted."""
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return list(values) if isinstance(values, list) else None


def may_be(types: set[str] | None, kind: str) -> bool:
    """Whether values of JSON type ``kind`` pass a type set (integer counts as number)."""
    return types is None or kind in types or (kind == "number" and "integer" in types)


def _covered(kind: str, types: set[str]) -> bool:
    return kind in types or (kind == "integer" and "number" in types)


def is_empty(schema: Any) -> bool:
    """True for schemas that accept everything (``true``, ``{}``, annotations only)."""
    return schema is True or (isinstance(schema, dict) and all(k in ANNOTATIONS for k in schema))


def _merge(base: dict[str, Any], extra: Any) -> Any:
    """Conjunction of two object schemas, merged shallowly (properties and required are combined)."""
    if extra is False or base is False:
        return False
    if not isinstance(extra, dict):
        return base
    merged = {**base, **extra}
    if "properties" in base and "properties" in extra:
        merged["properties"] = {**base["properties"], **extra["properties"]}
    if "required" in base and "required" in extra:
        merged["required"] = list(dict.fromkeys([*base["required"], *extra["required"]]))
    return merged


class _Diff:
    """One comparison of a writer (original) schema with a reader (update) schema."""

    def __init__(self, writer_root: Any, reader_root: Any) -> None:
        self.roots = (writer_root, reader_root)
        self.in_progress: set[tuple[int, int]] = set()
        self.keep: list[Any] = []  # why: keeps merged dicts alive so their ids stay unique during the walk

    def _deref(self, node: Any, side: int) -> Any:
        for _ in range(_MAX_DEPTH):
            if not isinstance(node, dict) or not isinstance(node.get("$ref"), str):
                return node
            target = resolve_pointer(self.roots[side], node["$ref"])
            siblings = {k: v for k, v in node.items() if k != "$ref" and k not in ANNOTATIONS}
            node = _merge(target, siblings) if siblings and isinstance(target, dict) else target
        return node

    def compare(self, writer: Any, reader: Any, path: str, depth: int) -> list[Issue]:
        """Issues at ``path`` and below."""
        writer, reader = self._deref(writer, 0), self._deref(reader, 1)
        if depth > _MAX_DEPTH or is_empty(reader) or writer is False:
            return []
        if reader is False:
            return [("TYPE_NARROWED", path, "the reader schema is false: it accepts nothing the writer sends")]
        if writer is True:
            writer = {}
        key = (id(writer), id(reader))
        if key in self.in_progress:
            return []  # a recursive schema met itself: assume compatible (co-inductively)
        self.in_progress.add(key)
        self.keep.append((writer, reader))
        try:
            return self._compare(writer, reader, path, depth)
        finally:
            self.in_progress.discard(key)

    def _compare(self, writer: dict[str, Any], reader: dict[str, Any], path: str, depth: int) -> list[Issue]:
        if isinstance(writer.get("allOf"), list):
            merged = {k: v for k, v in writer.items() if k != "allOf"}
            for member in writer["allOf"]:
                merged = _merge(merged, self._deref(member, 0))
            return self.compare(merged, reader, path, depth + 1)
        for combinator in ("anyOf", "oneOf"):
            if isinstance(writer.get(combinator), list):
                base = {k: v for k, v in writer.items() if k != combinator}
                issues: list[Issue] = []
                for alternative in writer[combinator]:
                    issues.extend(self.compare(_merge(base, self._deref(alternative, 0)), reader, path, depth + 1))
                return issues
        if isinstance(reader.get("allOf"), list):
            base = {k: v for k, v in reader.items() if k != "allOf"}
            issues = self.compare(writer, base, path, depth + 1)
            for i, member in enumerate(reader["allOf"]):
                issues.extend(self.compare(writer, member, f"{path}/allOf/{i}", depth + 1))
            return issues
        for combinator in ("anyOf", "oneOf"):
            if isinstance(reader.get(combinator), list):
                return self._sum(writer, reader, combinator, path, depth)
        return self._base(writer, reader, path, depth)

    def _sum(self, writer: dict[str, Any], reader: dict[str, Any], combinator: str, path: str,
             depth: int) -> list[Issue]:
        base = {k: v for k, v in reader.items() if k != combinator}
        declared = writer.get("type")
        if isinstance(declared, list) and len(declared) > 1:
            # why: {"type": ["string", "integer"]} is itself a sum; each of its types may match another alternative
            issues = []
            for kind in declared:
                issues.extend(self._sum({**writer, "type": kind}, reader, combinator, path, depth))
            return issues
        candidates = []
        for i, alternative in enumerate(reader[combinator]):
            issues = self.compare(writer, _merge(base, self._deref(alternative, 1)), f"{path}/{combinator}/{i}",
                                  depth + 1)
            if not issues:
                return []
            candidates.append((alternative, issues))
        # why: when one alternative has the writer's type, its own issues say more than "no alternative"
        same_type = [iss for alt, iss in candidates if json_types(self._deref(alt, 1)) == json_types(writer)]
        if len(same_type) == 1:
            return same_type[0]
        return [("SUM_TYPE_NARROWED", path,
                 f"no alternative of the reader's {combinator} accepts everything the writer allows")]

    def _base(self, writer: dict[str, Any], reader: dict[str, Any], path: str, depth: int) -> list[Issue]:
        issues: list[Issue] = []
        w_types, r_types = json_types(writer), json_types(reader)
        if r_types is not None:
            if w_types is None:
                issues.append(("TYPE_NARROWED", path,
                               f"the reader allows only {sorted(r_types)}; the writer allows any type"))
            else:
                lost = sorted(t for t in w_types if not _covered(t, r_types))
                if lost:
                    overlap = any(may_be(r_types, t) or _covered(t, r_types) for t in w_types)
                    kind = "TYPE_NARROWED" if overlap else "TYPE_CHANGED"
                    issues.append((kind, path, f"type changed from {sorted(w_types)} to {sorted(r_types)}: "
                                               f"the reader no longer accepts {lost}"))
        issues.extend(self._enum(writer, reader, path))
        both = (w_types, r_types)
        if all(may_be(t, "string") for t in both):
            issues.extend(StringRules.compare(writer, reader, path))
        if all(may_be(t, "number") for t in both):
            issues.extend(NumberRules.compare(writer, reader, path))
        if all(may_be(t, "object") for t in both):
            issues.extend(self._object(writer, reader, path, depth))
        if all(may_be(t, "array") for t in both):
            issues.extend(ArrayRules.compare(writer, reader, path, lambda w, r, p: self.compare(w, r, p, depth + 1)))
        if "not" in reader:
            # reader accepts "not N_r"; it covers the writer's "not N_w" when N_w accepts all of N_r
            if "not" not in writer or self.compare(reader["not"], writer["not"], f"{path}/not", depth + 1):
                issues.append(("NOT_TYPE_EXTENDED", f"{path}/not",
                               "the reader's 'not' excludes values the writer allows"))
        return issues

    @staticmethod
    def _enum(writer: dict[str, Any], reader: dict[str, Any], path: str) -> list[Issue]:
        r_values = enum_values(reader)
        if r_values is None:
            return []
        w_values = enum_values(writer)
        if w_values is None:
            return [("ENUM_ARRAY_NARROWED", f"{path}/enum", f"the reader restricts values to {r_values}")]
        allowed = {canonical_json(v) for v in r_values}
        lost = [v for v in w_values if canonical_json(v) not in allowed]
        if not lost:
            return []
        gained = {canonical_json(v) for v in r_values} - {canonical_json(v) for v in w_values}
        kind = "ENUM_ARRAY_CHANGED" if gained else "ENUM_ARRAY_NARROWED"
        return [(kind, f"{path}/enum", f"the reader no longer accepts enum values {lost}")]

    def _object(self, writer: dict[str, Any], reader: dict[str, Any], path: str, depth: int) -> list[Issue]:
        issues: list[Issue] = []
        w_props, r_props = writer.get("properties", {}), reader.get("properties", {})
        w_required, r_required = set(writer.get("required", [])), set(reader.get("required", []))
        for name in dict.fromkeys([*w_props, *r_props]):
            at = f"{path}/properties/{name.replace('~', '~0').replace('/', '~1')}"
            if name in w_props and name in r_props:
                issues.extend(self.compare(w_props[name], r_props[name], at, depth + 1))
            elif name in r_props:
                issues.extend(self._added(writer, name, r_props[name], name in r_required, at, depth))
            else:
                issues.extend(self._removed(reader, name, w_props[name], at, depth))
        for name in sorted(r_required - w_required):
            if name in r_props and name not in w_props:
                continue  # reported as an added property
            prop = self._deref(r_props.get(name, {}), 1)
            if not (isinstance(prop, dict) and "default" in prop):
                issues.append(("REQUIRED_ATTRIBUTE_ADDED", f"{path}/properties/{name}",
                               f"the reader requires '{name}', which the writer does not require"))
        w_extra, r_extra = _additional(writer), _additional(reader)
        if r_extra is False and w_extra is not False:
            issues.append(("ADDITIONAL_PROPERTIES_REMOVED", f"{path}/additionalProperties",
                           "the reader no longer allows additional properties"))
        elif isinstance(r_extra, dict) and not is_empty(r_extra) and is_empty(w_extra):
            issues.append(("ADDITIONAL_PROPERTIES_NARROWED", f"{path}/additionalProperties",
                           "the reader constrains additional properties the writer allows freely"))
        elif isinstance(r_extra, dict) and isinstance(w_extra, dict):
            issues.extend(self.compare(w_extra, r_extra, f"{path}/additionalProperties", depth + 1))
        w_patterns, r_patterns = writer.get("patternProperties", {}), reader.get("patternProperties", {})
        for pattern in set(w_patterns) & set(r_patterns):
            issues.extend(self.compare(w_patterns[pattern], r_patterns[pattern],
                                       f"{path}/patternProperties/{pattern}", depth + 1))
        issues.extend(NumberRules.bounds(writer, reader, path, "Properties"))
        issues.extend(self._dependencies(writer, reader, path, depth))
        return issues

    def _added(self, writer: dict[str, Any], name: str, schema: Any, required: bool, at: str,
               depth: int) -> list[Issue]:
        cover = _coverage(writer, name)
        resolved = self._deref(schema, 1)
        has_default = isinstance(resolved, dict) and "default" in resolved
        issues: list[Issue] = []
        if is_empty(cover):
            if not is_empty(resolved):
                issues.append(("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", at,
                               f"the reader adds constraints on property '{name}', which the writer's open "
                               f"content model lets through unchecked"))
            if required and not has_default:
                issues.append(("REQUIRED_ATTRIBUTE_ADDED", at, f"the reader requires new property '{name}'"))
            return issues
        if cover is not False and self.compare(cover, schema, at, depth + 1):
            issues.append(("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", at,
                           f"the reader's property '{name}' rejects values the writer's "
                           f"additionalProperties/patternProperties allow"))
        if required and not has_default:
            issues.append(("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", at,
                           f"the reader requires new property '{name}' (no default), which writer data lacks"))
        return issues

    def _removed(self, reader: dict[str, Any], name: str, schema: Any, at: str, depth: int) -> list[Issue]:
        cover = _coverage(reader, name)
        if is_empty(cover) or self._deref(schema, 0) is False:
            return []
        if cover is False:
            return [("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", at,
                     f"the reader drops property '{name}' and does not allow additional properties")]
        if self.compare(schema, cover, at, depth + 1):
            return [("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", at,
                     f"the reader drops property '{name}' and its additionalProperties/patternProperties "
                     f"reject values the writer allows")]
        return []

    def _dependencies(self, writer: dict[str, Any], reader: dict[str, Any], path: str, depth: int) -> list[Issue]:
        w_deps = {**writer.get("dependencies", {}), **writer.get("dependentRequired", {}),
                  **writer.get("dependentSchemas", {})}
        issues: list[Issue] = []
        for keyword in ("dependencies", "dependentRequired", "dependentSchemas"):
            for name, dep in reader.get(keyword, {}).items():
                at = f"{path}/{keyword}/{name}"
                old = w_deps.get(name)
                if isinstance(dep, list):
                    if not isinstance(old, list):
                        issues.append(("DEPENDENCY_ARRAY_ADDED", at, f"the reader adds a dependency of '{name}'"))
                    elif not set(dep) <= set(old):
                        kind = "DEPENDENCY_ARRAY_EXTENDED" if set(old) <= set(dep) else "DEPENDENCY_ARRAY_CHANGED"
                        issues.append((kind, at, f"'{name}' now also needs {sorted(set(dep) - set(old))}"))
                elif old is None or isinstance(old, list):
                    issues.append(("DEPENDENCY_SCHEMA_ADDED", at, f"the reader adds a schema dependency of '{name}'"))
                else:
                    issues.extend(self.compare(old, dep, at, depth + 1))
        return issues


def _additional(schema: dict[str, Any]) -> Any:
    """additionalProperties as True, False or a schema (``unevaluatedProperties: false`` counts as false)."""
    extra = schema.get("additionalProperties", schema.get("unevaluatedProperties", True))
    return True if is_empty(extra) else extra


def _coverage(schema: dict[str, Any], name: str) -> Any:
    """The schema a property not listed in ``properties`` gets: a matching pattern's, else additionalProperties."""
    for pattern, sub in schema.get("patternProperties", {}).items():
        try:
            if re.search(pattern, name):
                return sub
        except re.error:
            logger.debug("pattern %r is not a Python regex; ignored for coverage", pattern)
    return _additional(schema)

