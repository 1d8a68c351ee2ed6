"""JSON Schema validators for publish: jsonschema-rs decides the common (valid) case, the exact validator the rest.

Two validators per schema, both compiled once:
- the *exact* validator (unchanged behaviour, paths and messages): fastjsonschema-compiled code for drafts
  4, 6 and 7, a prebuilt ``jsonschema`` validator for 2019-09/2020-12 (or schemas fastjsonschema refuses);
- a jsonschema-rs (Rust) validator of the same bundled schema, same draft, built offline (every ``$ref`` is
  already a local pointer; ``offline=True`` makes any other reference an error instead of a fetch), with
  the exact validator's own format checks plugged in, and no default-filling (jsonschema-rs never writes).

``validate`` asks jsonschema-rs first (~1.5 µs against ~10 µs for a 20-field event); only when it says
invalid does the exact validator run, and its answer is final: its ValidationFailed (same JSONPath and
message as before) is raised, or the datum passes when it accepts. jsonschema-rs is therefore only ever
trusted to say "valid", and only for schemas where it cannot be more permissive than the exact validator:

- ``pattern``/``patternProperties`` regexes are ECMA-262 in jsonschema-rs and Python ``re`` in the exact
  validators. Positive ``\\d``/``\\w`` are ASCII-only in ECMA (stricter: the exact validator settles those),
  but negated classes, ``\\s``, ``\\b``, inline flags, ``\\Z``-style escapes and the like can accept more,
  so a schema with such a regex keeps the exact validator alone (``_rust_safe_pattern``).
- ``multipleOf`` with a fractional divisor under 2019-09/2020-12: ``jsonschema`` divides floats (0.3 is not
  a multiple of 0.1 there) while jsonschema-rs does not: the exact validator alone.
- Draft 3, or a schema jsonschema-rs cannot compile: the exact validator alone (logged).
- Data that is not JSON (bytes, non-string keys) makes jsonschema-rs raise: the exact validator decides.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import fastjsonschema
import jsonschema
import jsonschema_rs
from fastjsonschema.draft04 import CodeGeneratorDraft04
from fastjsonschema.draft06 import CodeGeneratorDraft06
from fastjsonschema.draft07 import CodeGeneratorDraft07
from fastjsonschema.draft2019 import CodeGeneratorDraft2019
from jsonschema.exceptions import best_match

from app.bus.registry.json_schema import DATA_KEYWORDS, bundled, draft_of
from app.bus.registry.types import ParsedSchema, ValidationFailed, child_path, index_path

logger = logging.getLogger(__name__)

Check = Callable[[Any], None]
FormatCheck = Callable[[str], bool]

_FAST_DRAFTS = (jsonschema.Draft4Validator, jsonschema.Draft6Validator, jsonschema.Draft7Validator)
_RUST_DRAFTS: dict[type, type[Any]] = {
    jsonschema.Draft4Validator: jsonschema_rs.Draft4Validator,
    jsonschema.Draft6Validator: jsonschema_rs.Draft6Validator,
    jsonschema.Draft7Validator: jsonschema_rs.Draft7Validator,
    jsonschema.Draft201909Validator: jsonschema_rs.Draft201909Validator,
    jsonschema.Draft202012Validator: jsonschema_rs.Draft202012Validator,
}
# every format jsonschema-rs knows: each one a schema uses is replaced by the exact check (or "always valid")
_RUST_FORMATS = (
    "date", "date-time", "time", "duration", "email", "idn-email", "hostname", "idn-hostname", "ipv4", "ipv6",
    "uri", "uri-reference", "iri", "iri-reference", "uri-template", "json-pointer", "relative-json-pointer",
    "regex", "uuid",
)
# regex escapes that mean the same, or something stricter, in ECMA-262 (jsonschema-rs) as in Python ``re``
_SAFE_ESCAPE_LETTERS = frozenset("dwtnrfvxu")
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def _json_path(datum: Any, parts: Sequence[Any]) -> str:
    """JSONPath of a location given as path parts, walking the datum to tell indexes from digit-like keys."""
    path, node = "$", datum
    for part in parts:
        if isinstance(node, list):
            index = int(part)
            path, node = index_path(path, index), node[index] if 0 <= index < len(node) else None
        else:
            key = str(part)
            path, node = child_path(path, key), node.get(key) if isinstance(node, dict) else None
    return path


# -- the exact validators (behaviour of record: paths and messages) ------------------------------------------
def _fast_generator(schema: Any) -> type[CodeGeneratorDraft04]:
    """The fastjsonschema code generator ``fastjsonschema.compile`` picks for a schema (its formats differ)."""
    version = schema.get("$schema", "") if isinstance(schema, dict) else ""
    if "draft-04" in version:
        return CodeGeneratorDraft04
    if "draft-06" in version:
        return CodeGeneratorDraft06
    if "draft-07" in version:
        return CodeGeneratorDraft07
    return CodeGeneratorDraft2019


def _regex_format(value: str) -> bool:
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def _fast(schema: Any) -> tuple[Check, dict[str, FormatCheck]]:
    compiled = fastjsonschema.compile(schema, use_default=False)

    def validate(datum: Any) -> None:
        try:
            compiled(datum)
        except fastjsonschema.JsonSchemaValueException as exc:
            message = exc.message
            if message.startswith(exc.name):
                message = message[len(exc.name):].lstrip()
            raise ValidationFailed(_json_path(datum, exc.path[1:]), message) from None

    formats: dict[str, FormatCheck] = {
        name: (lambda value, match=re.compile(regex).match: match(value) is not None)
        for name, regex in _fast_generator(schema).FORMAT_REGEXS.items()
    }
    formats["regex"] = _regex_format
    return validate, formats


def _slow(schema: Any) -> tuple[Check, dict[str, FormatCheck]]:
    cls = draft_of(schema)
    checker = cls.FORMAT_CHECKER
    validator = cls(schema, format_checker=checker)

    def validate(datum: Any) -> None:
        error = best_match(validator.iter_errors(datum))
        if error is not None:
            raise ValidationFailed(_json_path(datum, list(error.absolute_path)), error.message)

    formats: dict[str, FormatCheck] = {
        name: (lambda value, name=name: checker.conforms(value, name)) for name in checker.checkers
    }
    return validate, formats


def _exact(schema: Any, fingerprint: str) -> tuple[Check, dict[str, FormatCheck], bool]:
    """The exact validator, its format checks, and whether it is fastjsonschema's."""
    if draft_of(schema) in _FAST_DRAFTS:
        try:
            return (*_fast(schema), True)
        except (fastjsonschema.JsonSchemaDefinitionException, ValueError, TypeError, KeyError) as exc:
            logger.warning("fastjsonschema cannot compile schema %s (%s); using jsonschema", fingerprint[:12], exc)
    return (*_slow(schema), False)


# -- the jsonschema-rs pre-check -----------------------------------------------------------------------------
def _rust_safe_pattern(pattern: str) -> bool:
    """Whether an ECMA-262 reading of a Python regex can only accept what Python accepts (or less)."""
    if re.search(r"\(\?[A-Za-z]", pattern):  # inline flags, (?P<name>...)
        return False
    letters = {m.group(1) for m in _ESCAPE_RE.finditer(pattern) if m.group(1).isalnum()}
    if not letters <= _SAFE_ESCAPE_LETTERS:  # \s \S \D \W \b \B \Z \A \p, backreferences...
        return False
    # why: ECMA \d and \w are ASCII, so inside a negated class they exclude less than Python's Unicode ones
    return not ("[^" in pattern and letters & {"d", "w"})


def _rust_unsafe(node: Any, fast: bool) -> str | None:
    """Why jsonschema-rs could accept data the exact validator rejects, or None."""
    if isinstance(node, list):
        return next((why for why in (_rust_unsafe(v, fast) for v in node) if why), None)
    if not isinstance(node, dict):
        return None
    for key, value in node.items():
        if key in DATA_KEYWORDS:
            continue
        if key == "pattern" and isinstance(value, str) and not _rust_safe_pattern(value):
            return f"pattern {value!r}"
        if key == "patternProperties" and isinstance(value, dict):
            for regex in value:
                if not _rust_safe_pattern(regex):
                    return f"patternProperties regex {regex!r}"
        if key == "multipleOf" and not fast and isinstance(value, float) and not value.is_integer():
            return f"multipleOf {value!r} (jsonschema divides floats)"
        why = _rust_unsafe(value, fast)
        if why:
            return why
    return None


def _always(_value: str) -> bool:
    return True


def _formats_used(node: Any, found: set[str]) -> set[str]:
    """Every ``format`` name the schema uses."""
    if isinstance(node, list):
        for value in node:
            _formats_used(value, found)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "format" and isinstance(value, str):
                found.add(value)
            elif key not in DATA_KEYWORDS:
                _formats_used(value, found)
    return found


def _rust(schema: Any, formats: dict[str, FormatCheck], fast: bool, fingerprint: str) -> Callable[[Any], bool] | None:
    """jsonschema-rs ``is_valid`` of the schema, or None where it cannot stand in for the exact validator."""
    rust_cls = _RUST_DRAFTS.get(draft_of(schema))
    why = "no jsonschema-rs draft" if rust_cls is None else _rust_unsafe(schema, fast)
    if why is None:
        # why only the formats in use: any custom format costs every call ~1 µs (measured), used or not
        used = _formats_used(schema, set()) & {*_RUST_FORMATS, *formats}
        try:
            return rust_cls(  # type: ignore[misc]
                schema,
                validate_formats=True,
                formats={name: formats.get(name, _always) for name in used} or None,
                offline=True,  # why: references are bundled; anything else must never be fetched
            ).is_valid
        except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError, TypeError) as exc:
            why = f"jsonschema-rs cannot compile it: {exc}".splitlines()[0]
    logger.info("schema %s validated by the exact validator alone: %s", fingerprint[:12], why)
    return None


def compile_json_validator(parsed: ParsedSchema) -> Callable[[Any], None]:
    """Compile the validator of a JSON Schema (with its references bundled in)."""
    schema = bundled(parsed)
    exact, formats, fast = _exact(schema, parsed.fingerprint)
    is_valid = _rust(schema, formats, fast, parsed.fingerprint)
    if is_valid is None:
        return exact

    def validate(datum: Any) -> None:
        try:
            if is_valid(datum):
                return
        except (ValueError, TypeError, OverflowError, RecursionError):
            pass  # not JSON data (bytes, non-string keys): the exact validator decides
        exact(datum)

    return validate
