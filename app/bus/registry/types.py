"""Shared types of the schema registry core: parsed schemas, errors and constants."""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")
LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)


_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def child_path(path: str, key: str) -> str:
    """JSONPath of an object member: ``$.name`` for identifiers, ``$['odd key']`` otherwise."""
    if _IDENT_RE.match(key):
        return f"{path}.{key}"
    escaped = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"{path}['{escaped}']"


def index_path(path: str, index: int) -> str:
    """JSONPath of an array element: ``$.items[2]``."""
    return f"{path}[{index}]"


class SchemaError(ValueError):
    """A schema that cannot be parsed or is not valid for its type (API error 42201)."""


class UnresolvedReference(SchemaError):
    """A schema names a type, $ref or import that neither it nor its references define."""


class ValidationFailed(ValueError):
    """A datum does not conform to its schema; ``path`` is a JSONPath such as ``$.items[2].price``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class ParsedSchema:
    """A schema parsed, normalised and fingerprinted; equal fingerprints mean the same registered schema."""

    schema_type: str
    raw: str
    canonical: str
    fingerprint: str
    parsed: Any = field(compare=False, hash=False, repr=False)
    # reference name -> referenced schema text, kept so validators and compatibility can resolve them
    references: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)


def fingerprint_of(schema_type: str, canonical: str, references: Mapping[str, str] | None) -> str:
    """SHA-256 hex of the schema type, canonical text and the sorted references it was parsed with."""
    h = hashlib.sha256()
    h.update(schema_type.encode())
    h.update(b"\0")
    h.update(canonical.encode())
    for name in sorted(references or {}):
        # why: the same text with different referenced schemas is a different schema
        h.update(b"\0")
        h.update(name.encode())
        h.update(b"\0")
        h.update(hashlib.sha256(references[name].encode()).digest())  # type: ignore[index]
    return h.hexdigest()
