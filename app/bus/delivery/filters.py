"""Subscription filters: CEL expressions over the CloudEvents JSON and event-type globs."""
from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cel

logger = logging.getLogger(__name__)

MAX_FILTER_LENGTH = 2000
MAX_EVENT_TYPES = 50
MAX_EVENT_TYPE_LENGTH = 255
# Names a filter can use: the envelope attributes a subscriber cares about, plus the whole envelope.
FIELDS = ("id", "source", "type", "subject", "time", "key", "data", "headers")
VARIABLES = frozenset((*FIELDS, "event"))
# Comprehension macros bind their own names (the x in data.items.exists(x, x > 1)); cel reports them
# as variables, so they must not be taken for unknown ones.
_MACRO_BINDER_RE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
# A neutral envelope used once at compile time to catch expressions that can never be boolean.
_PROBE: dict[str, Any] = {
    "id": "",
    "source": "",
    "type": "",
    "subject": None,
    "time": None,
    "key": None,
    "data": {},
    "headers": {},
}
_BAD_TYPE_CHARS_RE = re.compile(r"[\s\x00-\x1f\x7f]")
# Lexer just good enough to find how an expression uses ``data``: string literals (so that their
# content is skipped), identifiers, and any other single character.
_TOKEN_RE = re.compile(
    r"(?P<str>[rRbB]{0,2}(?:'{3}.*?'{3}|\"{3}.*?\"{3}|'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"))"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<space>\s+)|(?P<other>.)",
    re.DOTALL,
)


class FilterError(ValueError):
    """A filter expression that does not parse, uses unknown names or cannot be boolean."""


class EventFilter:
    """A compiled filter; ``matches`` never raises (errors and non-boolean results count as no match)."""

    __slots__ = ("expr", "_program", "_names", "_data_fields")

    def __init__(
        self,
        expr: str | None,
        program: Any | None,
        names: tuple[str, ...],
        data_fields: frozenset[str] | None = None,
    ) -> None:
        self.expr = expr
        self._program = program
        self._names = names
        self._data_fields = data_fields

    def __repr__(self) -> str:
        return f"EventFilter({self.expr!r})"

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True when the event (CloudEvents structured JSON dict) satisfies the expression."""
        if self._program is None:
            return True
        # Converting Python values to CEL dominates the cost, so bind only the names the expression reads.
        context: dict[str, Any] = {}
        for name in self._names:
            if name == "event":
                context["event"] = event
            elif name == "headers":
                context["headers"] = event.get("headers") or {}
            elif name == "data" and self._data_fields is not None:
                data = event.get("data")
                if isinstance(data, Mapping):
                    # Only the top-level fields the expression selects: same result, a fraction of
                    # the conversion cost, and independent of the payload's size.
                    data = {k: data[k] for k in self._data_fields if k in data}
                context["data"] = data
            else:
                context[name] = event.get(name)
        try:
            result = self._program.execute(context)
        except Exception as exc:  # noqa: BLE001 - cel raises KeyError/TypeError/RuntimeError/ValueError
            logger.debug("filter %r did not evaluate for event %s: %s", self.expr, event.get("id"), exc)
            return False
        if not isinstance(result, bool):
            logger.debug("filter %r gave %s, not bool, for event %s", self.expr, type(result).__name__, event.get("id"))
            return False
        return result


_MATCH_ALL = EventFilter(None, None, ())


def compile_filter(expr: str | None) -> EventFilter:
    """Compile a CEL filter once (None or blank matches everything); FilterError with a readable reason."""
    if expr is None:
        return _MATCH_ALL
    if not isinstance(expr, str):
        raise FilterError("filter must be a string holding a CEL expression")
    if not expr.strip():
        return _MATCH_ALL
    if len(expr) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter is longer than {MAX_FILTER_LENGTH} characters")
    try:
        program = cel.compile(expr)
    except Exception as exc:  # noqa: BLE001 - the binding raises ValueError, guard against others
        raise FilterError(f"filter does not parse: {exc}") from exc
    bound = set(_MACRO_BINDER_RE.findall(expr))
    referenced = set(program.variables())
    unknown = sorted(referenced - VARIABLES - bound)
    if unknown:
        raise FilterError(
            f"filter uses unknown name(s) {', '.join(unknown)}; available: {', '.join(sorted(VARIABLES))}"
        )
    names = tuple(sorted(referenced & VARIABLES))
    # CEL here has no static type checker, so evaluate once on a neutral envelope: a non-boolean
    # result there (a literal, arithmetic, a string) can never become a useful filter. Errors on the
    # probe prove nothing (data.amount is simply absent) and are accepted.
    probe = {**_PROBE, "event": dict(_PROBE)}
    try:
        result = program.execute({name: probe[name] for name in names})
    except Exception:  # noqa: BLE001, S110 - see above
        result = None
    if result is not None and not isinstance(result, bool):
        raise FilterError(f"filter must be a boolean expression, but it gives a {type(result).__name__}")
    data_fields = _data_fields(expr) if "data" in names and "data" not in bound else None
    return EventFilter(expr, program, names, data_fields)


def _data_fields(expr: str) -> frozenset[str] | None:
    """The top-level fields selected from ``data`` when every use is ``data.<field>``; None otherwise."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN_RE.finditer(expr) if m.lastgroup != "space"]
    fields: set[str] = set()
    for i, (kind, text) in enumerate(tokens):
        if kind != "ident" or text != "data":
            continue
        if i > 0 and tokens[i - 1] == ("other", "."):
            continue  # a field called data (event.data), not the variable
        # Anything but a plain field select (data["x"], data.?x, size(data), data == {}) needs it all.
        if i + 2 >= len(tokens) or tokens[i + 1] != ("other", ".") or tokens[i + 2][0] != "ident":
            return None
        fields.add(tokens[i + 2][1])
    return frozenset(fields)


def type_matcher(globs: Sequence[str] | None) -> Callable[[str], bool]:
    """A predicate for event types matching any of the fnmatch globs (case-sensitive); None/empty matches all."""
    if not globs:
        return _match_any_type
    exact = frozenset(g for g in globs if not any(ch in g for ch in "*?["))
    patterns = [g for g in globs if g not in exact]
    if not patterns:
        return exact.__contains__
    # One combined regex instead of a loop of fnmatchcase calls: globs are checked per event.
    regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))

    def match(event_type: str) -> bool:
        return event_type in exact or regex.match(event_type) is not None

    return match


def _match_any_type(event_type: str) -> bool:
    """Every event type matches."""
    return True


def validate_event_types(value: object) -> list[str] | None:
    """Event-type globs from the API: None, or a list of up to 50 non-empty strings of <= 255 chars."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError('event_types must be a list of event types or globs, e.g. ["order.*"]')
    if len(value) > MAX_EVENT_TYPES:
        raise ValueError(f"event_types may hold at most {MAX_EVENT_TYPES} entries, got {len(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"event_types[{i}] must be a string, got {type(item).__name__}")
        if not item:
            raise ValueError(f"event_types[{i}] must not be empty")
        if len(item) > MAX_EVENT_TYPE_LENGTH:
            raise ValueError(f"event_types[{i}] is longer than {MAX_EVENT_TYPE_LENGTH} characters")
        if _BAD_TYPE_CHARS_RE.search(item):
            raise ValueError(f"event_types[{i}] must not contain whitespace or control characters")
        if item not in out:
            out.append(item)
    return out
