"""JSON Schema documents: parse, check against the draft's metaschema, canonicalise, bundle references.

Canonical form: canonical JSON (sorted keys, no whitespace). References (Confluent ``references``) are
resolved offline only: a ``$ref`` whose document part matches a reference name (exactly, relative to the
schema's ``$id``, or the referenced schema's own ``$id``) is rewritten to a JSON pointer into a bundled copy
of that document kept under ``BUNDLE_KEY``; any other external ``$ref`` is an UnresolvedReference. Nothing is
ever fetched over the network. ``$anchor`` fragments and ``$id`` below a document's root are not supported.
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urldefrag, urljoin

import jsonschema
from jsonschema.validators import validator_for

from app.bus.registry.types import ParsedSchema, SchemaError, UnresolvedReference, fingerprint_of

logger = logging.getLogger(__name__)

BUNDLE_KEY = "x-apg-references"
DEFAULT_DRAFT = jsonschema.Draft7Validator
# keywords whose values are data, not schemas: a {"$ref": ...} inside them is not a reference
DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})


def canonical_json(value: Any) -> str:
    """Canonical JSON text: sorted keys, no insignificant whitespace, UTF-8 characters kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def draft_of(schema: Any) -> type[jsonschema.protocols.Validator]:
    """The jsonschema validator class of the schema's ``$schema`` (draft 7 when absent or unknown)."""
    return validator_for(schema, default=DEFAULT_DRAFT) if isinstance(schema, dict) else DEFAULT_DRAFT


def _load(text: str, what: str) -> Any:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SchemaError(f"invalid JSON Schema{what}: not valid JSON: {exc}") from exc
    if not isinstance(doc, (dict, bool)):
        raise SchemaError(f"invalid JSON Schema{what}: expected an object or a boolean, got {type(doc).__name__}")
    try:
        draft_of(doc).check_schema(doc)
    except jsonschema.SchemaError as exc:
        raise SchemaError(f"invalid JSON Schema{what} at {exc.json_path}: {exc.message}") from exc
    return doc


def _doc_id(doc: Any) -> str:
    if not isinstance(doc, dict):
        return ""
    found = doc.get("$id", doc.get("id"))
    return urldefrag(found)[0] if isinstance(found, str) else ""


class _Bundler:
    """Rewrites ``$ref``s so every target lies inside one document."""

    def __init__(self, references: Mapping[str, Any]) -> None:
        self.names = list(references)
        self.ids = {name: _doc_id(doc) for name, doc in references.items()}

    def _target(self, ref: str, base: str, own_prefix: str) -> str:
        doc_part, fragment = urldefrag(ref)
        if fragment and not fragment.startswith("/"):
            raise UnresolvedReference(f"$ref '{ref}': only JSON-pointer fragments are supported, not anchors")
        if not doc_part:
            return f"#{own_prefix}{fragment}"
        absolute = urljoin(base, doc_part) if base else doc_part
        if base and absolute == base:
            return f"#{own_prefix}{fragment}"
        for index, name in enumerate(self.names):
            if doc_part == name or absolute == name or (base and urljoin(base, name) == absolute) or (
                self.ids[name] and self.ids[name] in (doc_part, absolute)
            ):
                return f"#/{BUNDLE_KEY}/{index}{fragment}"
        raise UnresolvedReference(f"$ref '{ref}' is not one of the schema's references")

    def rewrite(self, node: Any, base: str, prefix: str) -> Any:
        """A copy of ``node`` with every ``$ref`` pointing into the bundle."""
        if isinstance(node, list):
            return [self.rewrite(v, base, prefix) for v in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out[key] = self._target(value, base, prefix)
            elif key in DATA_KEYWORDS:
                out[key] = value
            else:
                out[key] = self.rewrite(value, base, prefix)
        return out


def bundle(root: Any, references: Mapping[str, Any]) -> Any:
    """One self-contained schema: ``root`` with its references embedded and every ``$ref`` a local pointer."""
    bundler = _Bundler(references)
    main = bundler.rewrite(root, _doc_id(root), "")
    if references and isinstance(main, dict):
        embedded = {}
        for index, (name, doc) in enumerate(references.items()):
            if isinstance(doc, dict):
                # why drop $id/$schema: an embedded $id would change the base URI the rewritten refs resolve on
                doc = {k: v for k, v in doc.items() if k not in ("$id", "id", "$schema")}
            embedded[str(index)] = bundler.rewrite(doc, bundler.ids[name], f"/{BUNDLE_KEY}/{index}")
        main = {**main, BUNDLE_KEY: embedded}
    _check_pointers(main, main)
    return main


def resolve_pointer(doc: Any, ref: str) -> Any:
    """The subschema a local ``#/a/b`` reference points to; KeyError when there is none."""
    node = doc
    fragment = ref[1:] if ref.startswith("#") else ref
    for raw in fragment.split("/")[1:] if fragment else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(ref)
    return node


def _check_pointers(node: Any, root: Any) -> None:
    """Every local ``$ref`` must point at something (else the schema is unusable: 42201)."""
    if isinstance(node, list):
        for value in node:
            _check_pointers(value, root)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                try:
                    resolve_pointer(root, value)
                except KeyError:
                    raise UnresolvedReference(f"$ref '{value}' points to nothing in the schema") from None
            elif key not in DATA_KEYWORDS:
                _check_pointers(value, root)


def parse_json_schema(text: str, references: Mapping[str, str]) -> ParsedSchema:
    """Parse a JSON Schema (with its references) into a ParsedSchema; raises SchemaError when invalid."""
    doc = _load(text, "")
    refs = {name: _load(body, f" (reference '{name}')") for name, body in references.items()}
    try:
        bundle(doc, refs)
    except RecursionError as exc:
        raise SchemaError("invalid JSON Schema: nested too deeply") from exc
    canonical = canonical_json(doc)
    return ParsedSchema(
        schema_type="JSON",
        raw=text,
        canonical=canonical,
        fingerprint=fingerprint_of("JSON", canonical, references),
        parsed=doc,
        references=dict(references),
    )


@functools.lru_cache(maxsize=512)
def bundled(parsed: ParsedSchema) -> Any:
    """The self-contained bundle of a parsed JSON Schema (cached; validators and compatibility use it)."""
    refs = {name: json.loads(body) for name, body in parsed.references.items()}
    return bundle(parsed.parsed, refs)
