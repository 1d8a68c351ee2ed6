"""Avro reader/writer compatibility following the specification's "Schema Resolution" rules.

Error types are those of Avro's Java ``SchemaCompatibility`` (which Confluent reports): TYPE_MISMATCH,
NAME_MISMATCH, FIXED_SIZE_MISMATCH, MISSING_ENUM_SYMBOLS, READER_FIELD_MISSING_DEFAULT_VALUE,
MISSING_UNION_BRANCH. Paths are JSON pointers into the reader schema (``/fields/2/type/items``).
Logical types do not take part in resolution (as in Java and Confluent).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from app.bus.registry import avro
from app.bus.registry.types import ParsedSchema

logger = logging.getLogger(__name__)

Issue = tuple[str, str, str]
# writer type -> reader types it may be promoted to (spec: "Schema Resolution")
PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


def check_avro(reader: ParsedSchema, writer: ParsedSchema) -> list[Issue]:
    """Issues preventing ``reader`` from reading data written with ``writer`` (empty = compatible)."""
    r_main, r_names = avro.model(reader)
    w_main, w_names = avro.model(writer)
    return _Resolver(r_names, w_names).check(r_main, w_main, "")


def _kind(schema: Any) -> str:
    return "union" if isinstance(schema, list) else schema if isinstance(schema, str) else schema["type"]


def _label(schema: Any) -> str:
    """How a type is named in messages: the primitive, the named type's full name, or array<...>/map<...>."""
    if isinstance(schema, list):
        return "[" + ", ".join(_label(b) for b in schema) + "]"
    if isinstance(schema, str):
        return schema
    kind = schema["type"]
    if kind in avro.NAMED:
        return f"{kind} {schema['name']}"
    if kind == "array":
        return f"array<{_label(schema['items'])}>"
    if kind == "map":
        return f"map<{_label(schema['values'])}>"
    return kind


class _Resolver:
    """Recursive reader/writer check over normalised schemas; remembers named pairs to end recursion."""

    def __init__(self, reader_names: Mapping[str, Any], writer_names: Mapping[str, Any]) -> None:
        self.reader_names = reader_names
        self.writer_names = writer_names
        self.in_progress: set[tuple[str, str]] = set()

    def _resolve(self, schema: Any, names: Mapping[str, Any]) -> Any:
        return names[schema] if isinstance(schema, str) and schema in names else schema

    def check(self, reader: Any, writer: Any, path: str) -> list[Issue]:
        """Issues reading ``writer`` data with ``reader`` at ``path``."""
        reader = self._resolve(reader, self.reader_names)
        writer = self._resolve(writer, self.writer_names)
        r_kind, w_kind = _kind(reader), _kind(writer)
        if w_kind == "union":
            # every branch the writer may have used must be readable
            issues: list[Issue] = []
            for i, branch in enumerate(writer):
                found = self._check_branch(reader, branch, path)
                if found:
                    issues.extend(found)
                    logger.debug("writer union branch %d not readable at %s", i, path or "/")
            return issues
        if r_kind == "union":
            return self._check_branch(reader, writer, path)
        if r_kind != w_kind:
            if r_kind in PROMOTIONS.get(w_kind, frozenset()):
                return []
            return [("TYPE_MISMATCH", path or "/",
                     f"reader type {_label(reader)} does not match writer type {_label(writer)}")]
        if r_kind in avro.PRIMITIVES:
            return []
        if r_kind in avro.NAMED:
            return self._named(reader, writer, path)
        if r_kind == "array":
            return self.check(reader["items"], writer["items"], f"{path}/items")
        if r_kind == "map":
            return self.check(reader["values"], writer["values"], f"{path}/values")
        return []

    def _check_branch(self, reader: Any, writer_branch: Any, path: str) -> list[Issue]:
        """Issues reading one (non-union) writer type with ``reader``, which may be a union."""
        reader = self._resolve(reader, self.reader_names)
        if not isinstance(reader, list):
            return self.check(reader, writer_branch, path)
        # why prefer an exact kind/name match first: the spec picks "the first schema in the reader's union
        # that matches"; a same-kind branch whose content differs should report its content issues
        writer = self._resolve(writer_branch, self.writer_names)
        first_issues: list[Issue] | None = None
        for i, branch in enumerate(reader):
            resolved = self._resolve(branch, self.reader_names)
            if not self._matches(resolved, writer):
                continue
            issues = self.check(resolved, writer, f"{path}/{i}")
            if not issues:
                return []
            if first_issues is None:
                first_issues = issues
        if first_issues is not None:
            return first_issues
        return [("MISSING_UNION_BRANCH", path or "/",
                 f"reader union {_label(reader)} has no branch for writer type {_label(writer)}")]

    def _matches(self, reader: Any, writer: Any) -> bool:
        """Whether a reader union branch is a candidate for a writer type (same kind and name, or promotion)."""
        r_kind, w_kind = _kind(reader), _kind(writer)
        if r_kind == w_kind:
            return r_kind not in avro.NAMED or self._names_match(reader, writer)
        return r_kind in PROMOTIONS.get(w_kind, frozenset())

    @staticmethod
    def _names_match(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> bool:
        """Spec: same unqualified name, or the writer's full name is one of the reader's aliases."""
        r_full, w_full = reader["name"], writer["name"]
        if r_full.rpartition(".")[2] == w_full.rpartition(".")[2]:
            return True
        aliases = reader.get("aliases", [])
        return w_full in aliases

    def _named(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[Issue]:
        if not self._names_match(reader, writer):
            return [("NAME_MISMATCH", f"{path}/name",
                     f"reader {reader['type']} {reader['name']} does not match writer {writer['name']} "
                     f"(names differ and the writer's name is not a reader alias)")]
        kind = reader["type"]
        if kind == "fixed":
            if reader["size"] != writer["size"]:
                return [("FIXED_SIZE_MISMATCH", f"{path}/size",
                         f"reader fixed {reader['name']} has size {reader['size']}, writer has {writer['size']}")]
            return []
        if kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return [("MISSING_ENUM_SYMBOLS", f"{path}/symbols",
                         f"reader enum {reader['name']} lacks writer symbols {missing} and has no default symbol")]
            return []
        key = (reader["name"], writer["name"])
        if key in self.in_progress:
            return []
        self.in_progress.add(key)
        try:
            return self._record(reader, writer, path)
        finally:
            self.in_progress.discard(key)

    def _record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[Issue]:
        writer_fields = {f["name"]: f for f in writer["fields"]}
        issues: list[Issue] = []
        for i, field in enumerate(reader["fields"]):
            at = f"{path}/fields/{i}"
            source = writer_fields.get(field["name"])
            if source is None:
                # the spec lets a reader field alias name the writer field it reads
                source = next((writer_fields[a] for a in field.get("aliases", []) if a in writer_fields), None)
            if source is not None:
                issues.extend(self.check(field["type"], source["type"], f"{at}/type"))
            elif "default" not in field:
                issues.append(("READER_FIELD_MISSING_DEFAULT_VALUE", at,
                               f"reader field '{field['name']}' of {reader['name']} has no default "
                               f"and is missing in writer"))
        return issues
