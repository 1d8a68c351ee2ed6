"""Protobuf schemas: strict parse with proto-schema-parser, semantic checks, a resolved model, canonical text.

Canonical form: the file regenerated from its AST with comments removed (proto-schema-parser's generator),
so whitespace, comments and layout do not change the fingerprint; declaration order still does.
References map an import path to the imported file's text; ``google/protobuf/*.proto`` imports are
well-known and need no reference (their types are treated as opaque). The schema's record type, as in
Confluent, is the first message of the file.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from antlr4.error.ErrorListener import ErrorListener
from proto_schema_parser import ast
from proto_schema_parser.generator import Generator
from proto_schema_parser.parser import Parser

from app.bus.registry.types import ParsedSchema, SchemaError, UnresolvedReference, fingerprint_of

logger = logging.getLogger(__name__)

SCALARS = frozenset({
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
})
WELL_KNOWN_IMPORT = "google/protobuf/"
WELL_KNOWN_PACKAGE = "google.protobuf."
_MAX_FIELD = 2**29 - 1
_RESERVED_BY_PROTOBUF = range(19000, 20000)


class _Raise(ErrorListener):
    """ANTLR error listener that turns the first syntax error into a SchemaError (ANTLR would recover)."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def syntaxError(self, recognizer: Any, offendingSymbol: Any, line: int, column: int, msg: str, e: Any) -> None:  # noqa: N802,N803
        raise SchemaError(f"invalid Protobuf schema{self.what}: line {line}:{column}: {msg}")


def _strict(what: str) -> Parser:
    def quiet(recognizer: Any) -> None:
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(_Raise(what))

    return Parser(setup_lexer=quiet, setup_parser=quiet)


def _strip_comments(node: Any) -> Any:
    """A copy of an AST node without Comment elements (comments must not change the canonical form)."""
    if isinstance(node, list):
        return [_strip_comments(n) for n in node if not isinstance(n, ast.Comment)]
    if hasattr(node, "__dataclass_fields__"):
        changes = {name: _strip_comments(getattr(node, name)) for name in ("file_elements", "elements")
                   if hasattr(node, name)}
        return replace(node, **changes) if changes else node
    return node


@dataclass
class ProtoField:
    """A message field with its type resolved: scalar name, full name of a message/enum, or a map."""

    name: str
    number: int
    type: str
    label: str | None = None  # "repeated", "optional", "required" or None
    oneof: str | None = None
    key_type: str | None = None  # set for map fields; ``type`` is then the value type

    @property
    def kind(self) -> str:
        """scalar, map or named (message, enum or well-known type)."""
        return "map" if self.key_type else "scalar" if self.type in SCALARS else "named"


@dataclass
class ProtoMessage:
    """A message by full name, its fields by number."""

    full_name: str
    fields: dict[int, ProtoField] = field(default_factory=dict)


@dataclass
class ProtoModel:
    """Every message and enum a schema can use (its own and its references'), by full name."""

    syntax: str
    package: str
    messages: dict[str, ProtoMessage] = field(default_factory=dict)
    enums: dict[str, dict[str, int]] = field(default_factory=dict)
    own: list[str] = field(default_factory=list)  # this file's messages, in declaration order


def _parse_file(text: str, what: str) -> ast.File:
    try:
        return _strict(what).parse(text)
    except SchemaError:
        raise
    except (ValueError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise SchemaError(f"invalid Protobuf schema{what}: {exc}") from exc


def _package(file: ast.File) -> str:
    return next((e.name for e in file.file_elements if isinstance(e, ast.Package)), "")


def _declared(file: ast.File, prefix: str) -> Iterable[tuple[str, Any]]:
    """(full name, Message/Enum node) for every type declared in a file, nested ones included."""
    stack: list[tuple[str, list[Any]]] = [(prefix, file.file_elements)]
    while stack:
        scope, elements = stack.pop()
        for element in elements:
            if isinstance(element, (ast.Message, ast.Enum)):
                full = f"{scope}.{element.name}" if scope else element.name
                yield full, element
                if isinstance(element, ast.Message):
                    stack.append((full, element.elements))


def _ranges(specs: Iterable[str]) -> list[range]:
    out = []
    for spec in specs:
        low, _, high = str(spec).partition(" to ")
        end = _MAX_FIELD if high.strip() == "max" else int(high or low)
        out.append(range(int(low), end + 1))
    return out


class _Builder:
    """Builds the ProtoModel and enforces the language rules the grammar does not."""

    def __init__(self, syntax: str, package: str) -> None:
        self.model = ProtoModel(syntax=syntax, package=package)
        self.types: set[str] = set()

    def declare(self, file: ast.File) -> list[tuple[str, Any]]:
        declared = list(_declared(file, _package(file)))
        for full, node in declared:
            if full in self.types:
                raise SchemaError(f"invalid Protobuf schema: '{full}' is declared twice")
            self.types.add(full)
            if isinstance(node, ast.Enum):
                self._enum(full, node, file.syntax or "proto2")
        return declared

    def _enum(self, full: str, node: ast.Enum, syntax: str) -> None:
        values = {v.name: v.number for v in node.elements if isinstance(v, ast.EnumValue)}
        if not values:
            raise SchemaError(f"invalid Protobuf enum '{full}': it has no values")
        first = next(v for v in node.elements if isinstance(v, ast.EnumValue))
        if syntax == "proto3" and first.number != 0:
            raise SchemaError(f"invalid Protobuf enum '{full}': in proto3 the first value must be 0")
        self.model.enums[full] = values

    def resolve(self, name: str, scope: str, where: str) -> str:
        """Full name of a type as protobuf scoping finds it from ``scope`` (innermost first)."""
        if name in SCALARS:
            return name
        if name.startswith("."):
            candidates = [name[1:]]
        else:
            parts = scope.split(".") if scope else []
            candidates = [".".join([*parts[:i], name]) for i in range(len(parts), -1, -1)]
        for candidate in candidates:
            if candidate in self.types or candidate.startswith(WELL_KNOWN_PACKAGE):
                return candidate
        raise UnresolvedReference(f"unknown Protobuf type '{name}' in {where}: not defined here or in an import")

    def message(self, full: str, node: ast.Message, syntax: str) -> None:
        message = ProtoMessage(full)
        reserved_numbers: list[range] = []
        reserved_names: set[str] = set()
        for element in node.elements:
            if isinstance(element, ast.Reserved):
                reserved_numbers += _ranges(element.ranges)
                reserved_names |= set(element.names)
        names: set[str] = set()
        for proto_field in self._fields(node.elements, None):
            where = f"field '{proto_field.name}' of '{full}'"
            if proto_field.number in message.fields:
                raise SchemaError(f"invalid Protobuf message '{full}': field number {proto_field.number} is used twice")
            if proto_field.name in names:
                raise SchemaError(f"invalid Protobuf message '{full}': field name '{proto_field.name}' is used twice")
            if not 1 <= proto_field.number <= _MAX_FIELD or proto_field.number in _RESERVED_BY_PROTOBUF:
                raise SchemaError(f"invalid Protobuf {where}: number {proto_field.number} is not allowed")
            if any(proto_field.number in r for r in reserved_numbers) or proto_field.name in reserved_names:
                raise SchemaError(f"invalid Protobuf {where}: its number or name is reserved")
            if syntax == "proto3" and proto_field.label == "required":
                raise SchemaError(f"invalid Protobuf {where}: proto3 has no required fields")
            proto_field.type = self.resolve(proto_field.type, full, where)
            if proto_field.key_type and proto_field.key_type not in SCALARS - {"float", "double", "bytes"}:
                raise SchemaError(f"invalid Protobuf {where}: map keys must be integral, bool or string")
            names.add(proto_field.name)
            message.fields[proto_field.number] = proto_field
        self.model.messages[full] = message

    def _fields(self, elements: list[Any], oneof: str | None) -> Iterable[ProtoField]:
        for element in elements:
            if isinstance(element, ast.Field):
                label = element.cardinality.value.lower() if element.cardinality else None
                yield ProtoField(element.name, element.number, element.type, label, oneof)
            elif isinstance(element, ast.MapField):
                yield ProtoField(element.name, element.number, element.value_type, None, oneof, element.key_type)
            elif isinstance(element, ast.OneOf):
                yield from self._fields(element.elements, element.name)
            elif isinstance(element, ast.Group):
                raise SchemaError("invalid Protobuf schema: groups are not supported")


def _imports(file: ast.File) -> list[str]:
    return [e.name for e in file.file_elements if isinstance(e, ast.Import)]


def build_model(file: ast.File, references: Mapping[str, str]) -> ProtoModel:
    """Resolve a parsed file against its references into a ProtoModel; raises SchemaError/UnresolvedReference."""
    ref_files = {name: _parse_file(text, f" (reference '{name}')") for name, text in references.items()}
    for owner, imports in [("the schema", _imports(file))] + [(f"'{n}'", _imports(f)) for n, f in ref_files.items()]:
        for path in imports:
            if path not in ref_files and not path.startswith(WELL_KNOWN_IMPORT):
                raise UnresolvedReference(f"Protobuf import '{path}' of {owner} is not among the references")
    builder = _Builder(file.syntax or "proto2", _package(file))
    declared = [(f.syntax or "proto2", builder.declare(f)) for f in ref_files.values()]
    own = builder.declare(file)
    declared.append((file.syntax or "proto2", own))
    for syntax, nodes in declared:
        for full, node in nodes:
            if isinstance(node, ast.Message):
                builder.message(full, node, syntax)
    builder.model.own = [full for full, node in own if isinstance(node, ast.Message)]
    if not builder.model.own:
        raise SchemaError("invalid Protobuf schema: it declares no message")
    return builder.model


def parse_protobuf(text: str, references: Mapping[str, str]) -> ParsedSchema:
    """Parse a .proto file (with its imports as references) into a ParsedSchema; raises SchemaError."""
    file = _strip_comments(_parse_file(text, ""))
    if file.syntax not in (None, "proto2", "proto3") or file.edition:
        raise SchemaError(f"invalid Protobuf schema: unsupported syntax {file.syntax or file.edition!r}")
    build_model(file, references)
    canonical = Generator().generate(file).strip()
    return ParsedSchema(
        schema_type="PROTOBUF",
        raw=text,
        canonical=canonical,
        fingerprint=fingerprint_of("PROTOBUF", canonical, references),
        parsed=file,
        references=dict(references),
    )


@functools.lru_cache(maxsize=512)
def model(parsed: ParsedSchema) -> ProtoModel:
    """The resolved model of a parsed Protobuf schema (cached; compatibility and validators use it)."""
    return build_model(parsed.parsed, parsed.references)


def record_message(parsed: ParsedSchema) -> ProtoMessage:
    """The message events are validated against: the file's first message (Confluent's default)."""
    resolved = model(parsed)
    return resolved.messages[resolved.own[0]]
