"""Compatibility levels: which existing versions a new schema is checked against, and in which direction."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from app.bus.registry.types import LEVELS, ParsedSchema

logger = logging.getLogger(__name__)

# A checker answers "can `reader` read data written with `writer`?" as (error type, path, description) triples.
Issue = tuple[str, str, str]
Checker = Callable[[ParsedSchema, ParsedSchema], list[Issue]]


def _checker(schema_type: str) -> Checker:
    """The reader/writer checker for a schema type (imported lazily: each pulls in its own parser)."""
    if schema_type == "AVRO":
        from app.bus.registry.avro_compat import check_avro

        return check_avro
    if schema_type == "JSON":
        from app.bus.registry.jsonschema_compat import check_json

        return check_json
    from app.bus.registry.protobuf_compat import check_protobuf

    return check_protobuf


def check_compatibility(
    level: str,
    new: ParsedSchema,
    existing: Sequence[ParsedSchema],
    *,
    versions: Sequence[int] | None = None,
) -> list[str]:
    """Messages saying why ``new`` breaks ``level`` against ``existing`` (oldest→newest); empty = compatible.

    BACKWARD: new reads old; FORWARD: old reads new; FULL: both. Non-transitive levels check the latest
    only. ``versions`` (same order as ``existing``) labels messages; by default positions 1..n are used.
    """
    level = (level or "").upper()
    if level not in LEVELS:
        raise ValueError(f"unknown compatibility level '{level}': expected one of {', '.join(LEVELS)}")
    if level == "NONE" or not existing:
        return []
    labels = list(versions) if versions is not None else list(range(1, len(existing) + 1))
    if len(labels) != len(existing):
        raise ValueError("versions must label every existing schema")
    pairs = list(zip(existing, labels, strict=True))
    if not level.endswith("_TRANSITIVE"):
        pairs = pairs[-1:]
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    messages: list[str] = []
    # why newest first: the most relevant breakage (against the latest version) is reported first
    for old, version in reversed(pairs):
        if old.schema_type != new.schema_type:
            messages.append(
                f"SCHEMA_TYPE_CHANGED: new schema is {new.schema_type} but version {version} is {old.schema_type}"
            )
            continue
        if old.fingerprint == new.fingerprint:
            continue  # the same schema reads itself
        check = _checker(new.schema_type)
        if backward:
            for kind, path, text in check(new, old):
                messages.append(f"{kind} at '{path}': {text} (new schema reading version {version})")
        if forward:
            for kind, path, text in check(old, new):
                messages.append(f"{kind} at '{path}': {text} (version {version} reading new schema)")
    return messages
