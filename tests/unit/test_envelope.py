"""The CloudEvents envelope: JSON and Kafka binary-mode round trips, and refusal of anything invalid."""
from __future__ import annotations

import base64
from datetime import UTC
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.bus.envelope import (
    EnvelopeError,
    Event,
    event_from_json,
    event_to_json,
    from_kafka,
    ms_to_rfc3339,
    parse_rfc3339,
    to_kafka,
)

# -- strategies ------------------------------------------------------------------------------------

# Attribute text as CloudEvents allows it: no control characters, no surrogates.
attr_text = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30)
# Any code point at all, with a bias towards the troublesome ones (NUL, newlines, lone surrogates).
any_text = st.text(st.characters(exclude_categories=()) | st.sampled_from("\x00\n\x85\ud800\udfff"), max_size=30)
json_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what JSON encoders agree on
json_values = st.recursive(
    st.none() | st.booleans() | json_ints | st.floats(allow_nan=False, allow_infinity=False) | attr_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(attr_text, inner, max_size=4),
    max_leaves=12,
)
# Arbitrary values a JSON parser (Python's json module included) can hand to the API.
wild_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**64, max_value=2**80) | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
event_types = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,40}", fullmatch=True)
header_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True).filter(
    lambda n: not n.lower().startswith("ce_") and n.lower() != "content-type"
)
times = st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat(timespec="milliseconds"))
times_z = times.map(lambda t: t.replace("+00:00", "Z"))


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    """The data part of an event: JSON, text or binary, with a fitting content type."""
    kind = draw(st.sampled_from(["json", "text", "binary"]))
    if kind == "json":
        ct = draw(st.sampled_from([None, "application/json", "application/cloudevents+json; charset=utf-8"]))
        out: dict[str, Any] = {"data": draw(json_values)}
    elif kind == "text":
        ct = draw(st.sampled_from(["text/plain", "text/csv; charset=utf-8"]))
        out = {"data": draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=40))}
    else:
        ct = draw(st.sampled_from([None, "application/octet-stream", "image/png"]))
        out = {"data_base64": base64.b64encode(draw(st.binary(max_size=40))).decode()}
    if ct is not None:
        out["datacontenttype"] = ct
    return out


@st.composite
def event_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Valid structured-mode JSON events, with optional attributes present or not."""
    obj: dict[str, Any] = {"type": draw(event_types), **draw(payloads())}
    optional = {
        "specversion": st.just("1.0"),
        "id": attr_text,
        "source": attr_text,
        "time": times | times_z,
        "subject": attr_text,
        "dataschema": attr_text,
        "key": st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=30),
        "headers": st.dictionaries(header_names, st.text(st.characters(exclude_categories=("Cc", "Cs"))),
                                   max_size=4),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            obj[name] = draw(strategy)
    return obj


# -- round trips -----------------------------------------------------------------------------------


@given(event_objects())
def test_json_round_trip(obj: dict[str, Any]) -> None:
    event = event_from_json(obj)
    out = event_to_json(event)
    assert event_from_json(out) == event
    # ...also once serialised, as the API sends it.
    assert event_from_json(orjson.loads(orjson.dumps(out))) == event
    if "data" in obj and event.is_json:
        assert out["data"] == orjson.loads(orjson.dumps(obj["data"]))


@given(event_objects())
def test_the_webhook_form_is_the_api_form_without_absent_attributes(obj: dict[str, Any]) -> None:
    event = event_from_json(obj)
    full = event_to_json(event)
    compact = event_to_json(event, omit_absent=True)
    assert compact == {k: v for k, v in full.items() if v is not None and not (k == "headers" and not v)}
    assert list(compact) == [k for k in full if k in compact]  # same order: the same bytes once serialised
    if "data" in compact or "data_base64" in compact:  # JSON null data is left out, and the API requires data
        assert event_from_json(compact) == event  # nothing but absent attributes left out


@given(event_objects(), st.integers(min_value=0, max_value=2**45), st.integers(0, 255), st.integers(0, 2**40))
def test_kafka_binary_mode_round_trip(obj: dict[str, Any], ts: int, partition: int, offset: int) -> None:
    event = event_from_json(obj)
    key, value, headers = to_kafka(event)
    assert value == event.data
    assert key == (None if event.key is None else event.key.encode())
    assert all(isinstance(n, str) and isinstance(v, bytes) for n, v in headers)
    assert from_kafka(key, value, headers, ts, "t.s", partition, offset) == event


@given(st.integers(min_value=-(2**40), max_value=2**45))
def test_log_time_round_trip(ms: int) -> None:
    text = ms_to_rfc3339(ms)
    assert text.endswith("Z")
    dt = parse_rfc3339(text)
    assert round(dt.timestamp() * 1000) == ms


# -- invalid input ---------------------------------------------------------------------------------


@settings(max_examples=300)
@given(wild_values)
def test_arbitrary_json_is_an_event_or_an_envelope_error(value: Any) -> None:
    try:
        event = event_from_json(value)
    except EnvelopeError:
        return
    assert isinstance(event, Event)


@settings(max_examples=300)
@given(event_objects(), st.data())
def test_corrupted_fields_give_envelope_errors_only(obj: dict[str, Any], data: st.DataObject) -> None:
    fields = ["type", "data", "data_base64", "specversion", "id", "source", "time", "subject",
              "datacontenttype", "dataschema", "key", "headers"]
    for name in data.draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3)):
        obj[name] = data.draw(wild_values)
    try:
        event = event_from_json(obj)
    except EnvelopeError:
        return
    # Whatever was accepted must be storable and sendable everywhere.
    to_kafka(event)
    orjson.dumps(event_to_json(event))


BASE = {"type": "order.created", "data": {"n": 1}}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"type": "order.created\n"}, "type"),  # `$` alone lets a trailing newline through
        ({"headers": {"x-trace\n": "1"}}, "headers"),
        ({"headers": {"content-type": "text/plain"}}, "headers"),  # Kafka binary mode owns it
        ({"headers": {"Content-Type": "text/plain"}}, "headers"),
        ({"headers": {"x": "a\r\nInjected: 1"}}, "headers"),
        ({"data": 2**70}, "data"),  # orjson refuses integers beyond 64 bits
        ({"data": "\ud800"}, "data"),
        ({"data": "\ud800", "datacontenttype": "text/plain"}, "data"),
        ({"subject": "a\x00b"}, "subject"),
        ({"id": "\udcff"}, "id"),
        ({"key": "k\x00"}, "key"),
        ({"time": "2024-01-01T00:00:00\x00Z"}, "time"),
        ({"time": "2024-01-01T00:00:00"}, "time"),  # no offset
        ({"data_base64": "AAAA"}, "data"),  # data and data_base64 together
        ({"specversion": "0.3"}, "specversion"),
    ],
)
def test_invalid_events_name_the_field(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        event_from_json({**BASE, **patch})
    assert info.value.field == field


def test_deeply_nested_data_is_refused() -> None:
    deep: Any = 1
    for _ in range(400):
        deep = [deep]
    with pytest.raises(EnvelopeError):
        event_from_json({"type": "t", "data": deep})


def test_json_null_data_stays_null() -> None:
    out = event_to_json(event_from_json({"type": "t", "data": None}))
    assert out["data"] is None
    assert "data_base64" not in out


def test_non_json_bytes_under_a_json_content_type_survive() -> None:
    for raw in (b"", b"not json", b"\xff\xfe"):
        event = Event(type="kafka.record", data=raw)
        out = event_to_json(event)
        assert base64.b64decode(out["data_base64"]) == raw
        assert event_from_json(out).data == raw


def test_data_base64_with_null_content_type_is_binary() -> None:
    event = event_from_json({"type": "t", "data_base64": "AAE=", "datacontenttype": None})
    assert event.datacontenttype == "application/octet-stream"
    assert event.data == b"\x00\x01"


def test_defaults() -> None:
    event = event_from_json({"type": "order.created", "data": {"n": 1}})
    assert event.source == "/"
    assert event.datacontenttype == "application/json"
    assert event.data == b'{"n":1}'
    assert event.id and event.time
    parse_rfc3339(event.time)


def test_plain_kafka_record_gets_stable_defaults() -> None:
    event = from_kafka(b"k", b'{"a":1}', [("trace", b"x")], 1_700_000_000_123, "t.s", 2, 42)
    assert event.id == "t.s-2-42"
    assert event.source == "kafka://t.s"
    assert event.type == "kafka.record"
    assert event.time == "2023-11-14T22:13:20.123Z"
    assert event.datacontenttype == "application/json"
    assert event.headers == {"trace": "x"}
    assert event.key == "k"
    binary = from_kafka(None, b"\x00\xff", None, 0, "t.s", 0, 0)
    assert binary.datacontenttype == "application/octet-stream"
    assert binary.key is None
