"""JSON Schema validators for publish: fastjsonschema-compiled code, jsonschema where fastjsonschema cannot go.

fastjsonschema implements drafts 4, 6 and 7; schemas declaring 2019-09 or 2020-12 (or that fastjsonschema
refuses to compile) use a prebuilt ``jsonschema`` validator instead. Defaults are never written into data.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import fastjsonschema
import jsonschema
from jsonschema.exceptions import best_match

from app.bus.registry.json_schema import bundled, draft_of
from app.bus.registry.types import ParsedSchema, ValidationFailed, child_path, index_path

logger = logging.getLogger(__name__)

_FAST_DRAFTS = (jsonschema.Draft4Validator, jsonschema.Draft6Validator, jsonschema.Draft7Validator)


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


def _fast(schema: Any) -> Callable[[Any], None]:
    compiled = fastjsonschema.compile(schema, use_default=False)

    def validate(datum: Any) -> None:
        try:
            compiled(datum)
        except fastjsonschema.JsonSchemaValueException as exc:
            message = exc.message
            if message.startswith(exc.name):
                message = message[len(exc.name):].lstrip()
            raise ValidationFailed(_json_path(datum, exc.path[1:]), message) from None

    return validate


def _slow(schema: Any) -> Callable[[Any], None]:
    cls = draft_of(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def validate(datum: Any) -> None:
        error = best_match(validator.iter_errors(datum))
        if error is not None:
            raise ValidationFailed(_json_path(datum, list(error.absolute_path)), error.message)

    return validate


def compile_json_validator(parsed: ParsedSchema) -> Callable[[Any], None]:
    """Compile the validator of a JSON Schema (with its references bundled in)."""
    schema = bundled(parsed)
    if draft_of(schema) in _FAST_DRAFTS:
        try:
            return _fast(schema)
        except (fastjsonschema.JsonSchemaDefinitionException, ValueError, TypeError, KeyError) as exc:
            logger.warning("fastjsonschema cannot compile schema %s (%s); using jsonschema",
                           parsed.fingerprint[:12], exc)
    return _slow(schema)
