"""CEL subscription filters and event-type globs."""
from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from app.bus.delivery.filters import (
    MAX_FILTER_LENGTH,
    EventFilter,
    FilterError,
    compile_filter,
    type_matcher,
    validate_event_types,
)

logger = logging.getLogger(__name__)


def event(**overrides: Any) -> dict[str, Any]:
    """A CloudEvents structured JSON dict as the bus produces it."""
    base: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/shop",
        "type": "order.created",
        "time": "2024-05-01T12:00:00Z",
        "subject": "order/42",
        "datacontenttype": "application/json",
        "dataschema": None,
        "key": "customer-7",
        "headers": {"tenant": "acme"},
        "data": {"amount": 150, "currency": "EUR", "items": [{"sku": "a", "price": 5}, {"sku": "b", "price": 20}]},
    }
    base.update(overrides)
    return base


def test_required_example() -> None:
    f = compile_filter('data.amount > 100 && type == "order.created"')
    assert f.matches(event())
    assert not f.matches(event(data={"amount": 50}))
    assert not f.matches(event(type="order.cancelled"))
    assert f.matches(event(data={"amount": 100.5}))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('source == "/shop"', True),
        ('subject.startsWith("order/")', True),
        ('key == "customer-7"', True),
        ('headers.tenant == "acme"', True),
        ('"tenant" in headers', True),
        ('id == "evt-2"', False),
        ('time > "2024-01-01"', True),
        ('data.currency in ["EUR", "USD"]', True),
        ("data.items.exists(i, i.price > 10)", True),
        ("data.items.all(i, i.price > 10)", False),
        ("size(data.items) == 2", True),
        ('type.matches("^order\\\\.")', True),
        ('event.type == "order.created" && event.specversion == "1.0"', True),
        ("has(data.amount)", True),
        ("has(data.discount)", False),
        ("true", True),
        ("false", False),
    ],
)
def test_valid_expressions(expr: str, expected: bool) -> None:
    assert compile_filter(expr).matches(event()) is expected


@pytest.mark.parametrize(
    "ev",
    [
        event(data={}),  # missing field
        event(data={"amount": "lots"}),  # type mismatch
        event(data=None),
        event(data=[1, 2]),
        {k: v for k, v in event().items() if k != "data"},  # no data at all (data_base64 payload)
        {},
    ],
)
def test_evaluation_errors_are_false(ev: dict[str, Any]) -> None:
    assert compile_filter('data.amount > 100 && type == "order.created"').matches(ev) is False


def test_non_boolean_result_at_runtime_is_false() -> None:
    f = compile_filter("data.amount")  # cannot be proven non-boolean at compile time
    assert f.matches(event()) is False
    assert f.matches(event(data={"amount": True})) is True


def test_error_on_one_side_of_or_is_absorbed() -> None:
    # CEL's commutative || and &&: an error on one side does not matter if the other decides.
    assert compile_filter('data.missing > 1 || type == "order.created"').matches(event())
    assert not compile_filter('data.missing > 1 && type == "nope"').matches(event())


@pytest.mark.parametrize("expr", [None, "", "   "])
def test_empty_filter_matches_everything(expr: str | None) -> None:
    f = compile_filter(expr)
    assert isinstance(f, EventFilter)
    assert f.matches(event()) and f.matches({})


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("data.amount >", "does not parse"),
        ('type == "unterminated', "does not parse"),
        ("(a", "does not parse"),
        ('"just a string"', "boolean"),
        ("1 + 2", "boolean"),
        ("[1, 2]", "boolean"),
        ("amount > 100", "unknown name"),
        ("event_type == 'x'", "unknown name"),
        ("x" * (MAX_FILTER_LENGTH + 1), "longer than"),
    ],
)
def test_invalid_expressions(expr: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        compile_filter(expr)


def test_parse_error_carries_parser_message() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter("data.amount >")
    assert "Syntax error" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_string_filter() -> None:
    with pytest.raises(FilterError):
        compile_filter(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "expr",
    [
        "data.amount > 100",
        'data.currency == "EUR" && data.amount > 1',
        "has(data.discount)",
        "data.items.exists(i, i.price > 10)",
        'data["amount"] > 100',
        "size(data) == 3",
        'data == {"amount": 150}',
        '"data.amount" == "x" || data.currency == "EUR"',
        "event.data.amount > 100",
        "[data].exists(data, data.amount > 1)",
    ],
)
@pytest.mark.parametrize("payload", [event()["data"], {"amount": 1}, {}, None, [1], "text"])
def test_data_projection_gives_the_same_answer(expr: str, payload: Any) -> None:
    import cel

    ev = event(data=payload)
    try:
        full = cel.compile(expr).execute({"data": payload, "event": ev})
    except Exception:  # noqa: BLE001
        full = False
    assert compile_filter(expr).matches(ev) is (full is True)


def test_evaluation_speed_is_reported() -> None:
    f = compile_filter('data.amount > 100 && type == "order.created"')
    ev = event()
    n = 5000
    started = time.perf_counter()
    for _ in range(n):
        f.matches(ev)
    per_eval_us = (time.perf_counter() - started) / n * 1e6
    # Reported, never asserted: timing depends on the machine.
    logger.info("CEL filter: %.1f us/eval", per_eval_us)
    big = event(data={"amount": 150, "blob": [{"n": i, "s": "x" * 20} for i in range(1000)]})
    started = time.perf_counter()
    for _ in range(n):
        f.matches(big)
    logger.info("CEL filter, 1000-element payload: %.1f us/eval", (time.perf_counter() - started) / n * 1e6)


@pytest.mark.parametrize(
    ("globs", "event_type", "expected"),
    [
        (None, "anything", True),
        ([], "anything", True),
        (["order.*"], "order.created", True),
        (["order.*"], "order", False),
        (["order.*"], "Order.created", False),  # case-sensitive
        (["order.created"], "order.created", True),
        (["order.created"], "order.created.v2", False),
        (["order.?reated"], "order.created", True),
        (["invoice.*", "order.created"], "invoice.paid", True),
        (["invoice.*", "order.created"], "order.cancelled", False),
        (["*"], "x", True),
        (["order.[cu]*"], "order.updated", True),
        (["order.[cu]*"], "order.deleted", False),
    ],
)
def test_type_matcher(globs: list[str] | None, event_type: str, expected: bool) -> None:
    assert type_matcher(globs)(event_type) is expected


def test_validate_event_types() -> None:
    assert validate_event_types(None) is None
    assert validate_event_types([]) == []
    assert validate_event_types(["order.*", "invoice.paid", "order.*"]) == ["order.*", "invoice.paid"]
    assert validate_event_types(("a",)) == ["a"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("order.*", "list"),
        ({"order.*": 1}, "list"),
        (5, "list"),
        (["a"] * 51, "at most 50"),
        ([""], "empty"),
        ([1], "string"),
        ([None], "string"),
        (["x" * 256], "255"),
        (["order created"], "whitespace"),
    ],
)
def test_validate_event_types_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_event_types(value)
