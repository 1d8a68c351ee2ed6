"""Keyword-level JSON Schema compatibility rules (strings, numbers, counts, arrays), Confluent difference names."""
from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any

logger = logging.getLogger(__name__)

Issue = tuple[str, str, str]
Compare = Callable[[Any, Any, str], list[Issue]]

# keywords that assert nothing about a value
ANNOTATIONS = frozenset({
    "$schema", "$id", "id", "$comment", "title", "description", "default", "examples", "readOnly", "writeOnly",
    "deprecated", "definitions", "$defs", "$anchor", "$dynamicAnchor", "$vocabulary", "format",
    "contentEncoding", "contentMediaType", "x-apg-references",
})


def _upper(schema: dict[str, Any]) -> tuple[Any, bool] | None:
    """The tightest upper bound of a number schema as (value, exclusive); draft-4 boolean exclusives handled."""
    bounds = []
    exclusive = schema.get("exclusiveMaximum")
    if "maximum" in schema:
        bounds.append((schema["maximum"], exclusive is True))
    if isinstance(exclusive, (int, float)) and not isinstance(exclusive, bool):
        bounds.append((exclusive, True))
    return min(bounds, key=lambda b: (b[0], not b[1])) if bounds else None


def _lower(schema: dict[str, Any]) -> tuple[Any, bool] | None:
    """The tightest lower bound of a number schema as (value, exclusive)."""
    bounds = []
    exclusive = schema.get("exclusiveMinimum")
    if "minimum" in schema:
        bounds.append((schema["minimum"], exclusive is True))
    if isinstance(exclusive, (int, float)) and not isinstance(exclusive, bool):
        bounds.append((exclusive, True))
    return max(bounds, key=lambda b: (b[0], b[1])) if bounds else None


def multiple_relation(old: Any, new: Any) -> str | None:
    """None when multipleOf ``new`` accepts every multiple of ``old``, else the Confluent difference type."""
    if (Fraction(str(old)) / Fraction(str(new))).denominator == 1:
        return None
    expanded = (Fraction(str(new)) / Fraction(str(old))).denominator == 1
    return "MULTIPLE_OF_EXPANDED" if expanded else "MULTIPLE_OF_CHANGED"


class NumberRules:
    """maximum/minimum (inclusive and exclusive), multipleOf, and the generic count bounds."""

    @staticmethod
    def compare(writer: dict[str, Any], reader: dict[str, Any], path: str) -> list[Issue]:
        """Issues from numeric keywords."""
        issues: list[Issue] = []
        w_up, w_low = _upper(writer), _lower(writer)
        for keyword, exclusive in (("maximum", False), ("exclusiveMaximum", True)):
            limit = reader.get(keyword)
            if limit is None or isinstance(limit, bool):
                continue
            if keyword == "maximum" and reader.get("exclusiveMaximum") is True:
                exclusive = True  # draft 4: maximum made exclusive by a boolean
            name = "EXCLUSIVE_MAXIMUM" if keyword == "exclusiveMaximum" else "MAXIMUM"
            if w_up is None:
                issues.append((f"{name}_ADDED", f"{path}/{keyword}", f"the reader adds {keyword} {limit}"))
            elif w_up[0] > limit or (w_up[0] == limit and exclusive and not w_up[1]):
                issues.append((f"{name}_DECREASED", f"{path}/{keyword}",
                               f"{keyword} decreased: the writer allows up to {w_up[0]}, the reader {limit}"))
        for keyword, exclusive in (("minimum", False), ("exclusiveMinimum", True)):
            limit = reader.get(keyword)
            if limit is None or isinstance(limit, bool):
                continue
            if keyword == "minimum" and reader.get("exclusiveMinimum") is True:
                exclusive = True
            name = "EXCLUSIVE_MINIMUM" if keyword == "exclusiveMinimum" else "MINIMUM"
            if w_low is None:
                issues.append((f"{name}_ADDED", f"{path}/{keyword}", f"the reader adds {keyword} {limit}"))
            elif w_low[0] < limit or (w_low[0] == limit and exclusive and not w_low[1]):
                issues.append((f"{name}_INCREASED", f"{path}/{keyword}",
                               f"{keyword} increased: the writer allows down to {w_low[0]}, the reader {limit}"))
        if "multipleOf" in reader:
            new = reader["multipleOf"]
            if "multipleOf" not in writer:
                issues.append(("MULTIPLE_OF_ADDED", f"{path}/multipleOf", f"the reader adds multipleOf {new}"))
            else:
                kind = multiple_relation(writer["multipleOf"], new)
                if kind:
                    issues.append((kind, f"{path}/multipleOf",
                                   f"multipleOf changed from {writer['multipleOf']} to {new}"))
        return issues

    @staticmethod
    def bounds(writer: dict[str, Any], reader: dict[str, Any], path: str, noun: str) -> list[Issue]:
        """maxLength/minLength, maxItems/minItems or maxProperties/minProperties (``noun``: Length, Items...)."""
        issues: list[Issue] = []
        upper, lower = f"max{noun}", f"min{noun}"
        label = {"Length": "LENGTH", "Items": "ITEMS", "Properties": "PROPERTIES"}[noun]
        if upper in reader:
            if upper not in writer:
                issues.append((f"MAX_{label}_ADDED", f"{path}/{upper}", f"the reader adds {upper} {reader[upper]}"))
            elif writer[upper] > reader[upper]:
                issues.append((f"MAX_{label}_DECREASED", f"{path}/{upper}",
                               f"{upper} decreased from {writer[upper]} to {reader[upper]}"))
        if reader.get(lower, 0) > 0:
            if lower not in writer:
                issues.append((f"MIN_{label}_ADDED", f"{path}/{lower}", f"the reader adds {lower} {reader[lower]}"))
            elif writer[lower] < reader[lower]:
                issues.append((f"MIN_{label}_INCREASED", f"{path}/{lower}",
                               f"{lower} increased from {writer[lower]} to {reader[lower]}"))
        return issues


class StringRules:
    """maxLength, minLength and pattern."""

    @staticmethod
    def compare(writer: dict[str, Any], reader: dict[str, Any], path: str) -> list[Issue]:
        """Issues from string keywords."""
        issues = NumberRules.bounds(writer, reader, path, "Length")
        if "pattern" in reader:
            if "pattern" not in writer:
                issues.append(("PATTERN_ADDED", f"{path}/pattern", f"the reader adds pattern {reader['pattern']!r}"))
            elif writer["pattern"] != reader["pattern"]:
                issues.append(("PATTERN_CHANGED", f"{path}/pattern",
                               f"pattern changed from {writer['pattern']!r} to {reader['pattern']!r}"))
        return issues


def _tuple(schema: dict[str, Any]) -> tuple[list[Any] | None, Any]:
    """(per-position item schemas or None, schema of the remaining items) for any draft's array keywords."""
    if isinstance(schema.get("prefixItems"), list):
        return schema["prefixItems"], schema.get("items", True)
    items = schema.get("items", True)
    if isinstance(items, list):
        return items, schema.get("additionalItems", True)
    return None, items


class ArrayRules:
    """items (single schema or tuple), additionalItems, maxItems/minItems, uniqueItems."""

    @staticmethod
    def compare(writer: dict[str, Any], reader: dict[str, Any], path: str, compare: Compare) -> list[Issue]:
        """Issues from array keywords; ``compare`` recurses into item schemas."""
        issues = NumberRules.bounds(writer, reader, path, "Items")
        if reader.get("uniqueItems") is True and writer.get("uniqueItems") is not True:
            issues.append(("UNIQUE_ITEMS_ADDED", f"{path}/uniqueItems", "the reader requires unique items"))
        w_tuple, w_rest = _tuple(writer)
        r_tuple, r_rest = _tuple(reader)
        if w_tuple is None and r_tuple is None:
            if "items" in reader:
                issues.extend(compare(w_rest, r_rest, f"{path}/items"))
            return issues
        w_tuple, r_tuple = w_tuple or [], r_tuple or []
        for i in range(max(len(w_tuple), len(r_tuple))):
            at = f"{path}/items/{i}"
            if i < len(w_tuple) and i < len(r_tuple):
                issues.extend(compare(w_tuple[i], r_tuple[i], at))
            elif i < len(r_tuple):  # item position the writer covers only by its rest schema
                if w_rest is False:
                    continue
                if w_rest is True or w_rest == {}:
                    if r_tuple[i] not in (True, {}):
                        issues.append(("ITEM_ADDED_TO_OPEN_CONTENT_MODEL", at,
                                       f"the reader constrains item {i}, which the writer leaves open"))
                elif compare(w_rest, r_tuple[i], at):
                    issues.append(("ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", at,
                                   f"the reader's item {i} rejects values the writer's additional items allow"))
            else:  # the reader covers this writer position only by its rest schema
                if r_rest is False and w_tuple[i] is not False:
                    issues.append(("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", at,
                                   f"the reader drops item {i} and allows no additional items"))
                elif isinstance(r_rest, dict) and r_rest and compare(w_tuple[i], r_rest, at):
                    issues.append(("ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", at,
                                   f"the reader drops item {i} and its additional items reject writer values"))
        if w_rest is not False:  # items past both tuples: the writer's rest against the reader's
            if r_rest is False:
                issues.append(("ADDITIONAL_ITEMS_REMOVED", f"{path}/additionalItems",
                               "the reader no longer allows additional items"))
            elif isinstance(r_rest, dict) and r_rest:
                issues.extend(compare(w_rest, r_rest, f"{path}/additionalItems"))
        return issues
