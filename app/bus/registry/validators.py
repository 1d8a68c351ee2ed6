"""Publish-time validators: compiled once per schema, cached by fingerprint."""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from app.bus.registry.types import ParsedSchema

logger = logging.getLogger(__name__)

Validator = Callable[[Any], None]
CACHE_SIZE = 1024
_cache: OrderedDict[str, Validator] = OrderedDict()
_lock = threading.Lock()


def compile_validator(parsed: ParsedSchema) -> Validator:
    """A callable that returns None for a valid JSON datum and raises ValidationFailed(path, message) otherwise.

    Paths are JSONPath: ``$`` is the datum, ``$.items[2].price`` a nested value, ``$['odd key']`` a key
    that is not an identifier.
    """
    if parsed.schema_type == "JSON":
        from app.bus.registry.json_validate import compile_json_validator

        return compile_json_validator(parsed)
    if parsed.schema_type == "AVRO":
        from app.bus.registry.avro_json import compile_avro_validator

        return compile_avro_validator(parsed)
    from app.bus.registry.protobuf_validate import compile_protobuf_validator

    return compile_protobuf_validator(parsed)


def validator_for(parsed: ParsedSchema) -> Validator:
    """The cached validator of a schema (compiled on first use; thread-safe, LRU-bounded)."""
    key = parsed.fingerprint
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    # why compile outside the lock: compiling can take milliseconds; a duplicate compile is harmless
    validator = compile_validator(parsed)
    with _lock:
        # why setdefault: when two threads compiled at once, both get the first one stored
        validator = _cache.setdefault(key, validator)
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return validator


def clear_cache() -> None:
    """Forget every compiled validator (tests; schema deletion does not require it: keys are fingerprints)."""
    with _lock:
        _cache.clear()
