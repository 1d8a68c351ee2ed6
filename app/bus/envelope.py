"""CloudEvents 1.0 envelope and its codecs: structured JSON (the API) and Kafka binary mode (ce_ headers)."""
from __future__ import annotations

import base64
import functools
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from app.bus.ids import new_id

SPECVERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
MAX_ATTRIBUTE_LENGTH = 1024
MAX_HEADERS = 64
_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,254}$")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# CloudEvents 1.0 forbids control characters and surrogates in string attributes; they also break
# HTTP headers (webhooks), UTF-8 encoding (Kafka headers) and PostgreSQL text (NUL).
_BAD_CHARS_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Header names the Kafka binary mode reserves for itself (content-type carries datacontenttype).
_RESERVED_HEADERS = frozenset({"content-type"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Attributes mapped one-to-one onto ce_<name> Kafka headers.
_CE_ATTRS = ("id", "source", "type", "time", "subject", "dataschema")
DEFAULT_SOURCE = "/"
KAFKA_SOURCE = "kafka"


class EnvelopeError(ValueError):
    """An event that is not a valid envelope; ``field`` names the offending attribute."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(slots=True)
class Event:
    """One CloudEvent. ``data`` holds the encoded payload bytes (JSON for application/json)."""

    type: str
    data: bytes
    id: str = field(default_factory=new_id)
    source: str = DEFAULT_SOURCE
    time: str | None = None
    subject: str | None = None
    datacontenttype: str = JSON_CONTENT_TYPE
    dataschema: str | None = None
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_json(self) -> bool:
        """True when ``data`` is JSON (the content type says so)."""
        return _json_type(self.datacontenttype)

    def data_value(self) -> Any:
        """The payload as a JSON value when possible, else text, else None (see ``data_base64``)."""
        if self.is_json:
            try:
                return orjson.loads(self.data)
            except orjson.JSONDecodeError:
                pass
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def key_bytes(self) -> bytes | None:
        """The partition key as bytes (UTF-8), as Kafka hashes it."""
        return None if self.key is None else self.key.encode("utf-8")


@dataclass(slots=True)
class Record:
    """An event as stored: its place in the log and the log's timestamp (ms since the epoch)."""

    stream: str
    partition: int
    offset: int
    timestamp_ms: int
    event: Event


@functools.lru_cache(maxsize=256)
def _json_type(content_type: str) -> bool:
    # Asked for every event delivered or shown, of a handful of distinct content types: parsed once each.
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct == JSON_CONTENT_TYPE or ct.endswith("+json")


_now_cache: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """The current UTC time in RFC 3339 with milliseconds (formatted once per millisecond)."""
    global _now_cache
    ms = time.time_ns() // 1_000_000
    cached = _now_cache
    if cached[0] == ms:
        return cached[1]
    text = ms_to_rfc3339(ms)
    _now_cache = (ms, text)  # one tuple assignment: threads see an old or a new pair, never a torn one
    return text


def ms_to_rfc3339(ms: int) -> str:
    """Milliseconds since the epoch as RFC 3339 UTC."""
    dt = _EPOCH + timedelta(milliseconds=ms)  # exact, unlike float seconds
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive values are refused."""
    if not isinstance(value, str) or len(value) > 64 or _BAD_CHARS_RE.search(value):
        raise EnvelopeError("time must be an RFC 3339 string", "time")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise EnvelopeError(f"not an RFC 3339 time: {value!r}", "time") from exc
    if dt.tzinfo is None:
        raise EnvelopeError("time needs a UTC offset (RFC 3339)", "time")
    return dt


def _opt_str(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ATTRIBUTE_LENGTH:
        raise EnvelopeError(f"{name} must be a non-empty string of at most {MAX_ATTRIBUTE_LENGTH} characters", name)
    if _BAD_CHARS_RE.search(value):
        raise EnvelopeError(f"{name} must not contain control characters", name)
    return value


def _headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_HEADERS:
        raise EnvelopeError(f"headers must be an object of at most {MAX_HEADERS} string values", "headers")
    for name, val in value.items():
        if (
            not isinstance(name, str)
            or not _HEADER_NAME_RE.fullmatch(name)
            or name.lower().startswith("ce_")
            or name.lower() in _RESERVED_HEADERS
        ):
            raise EnvelopeError(f"bad header name {name!r}", "headers")
        if not isinstance(val, str) or len(val) > MAX_ATTRIBUTE_LENGTH or _BAD_CHARS_RE.search(val):
            raise EnvelopeError(f"header {name!r} must be a string without control characters", "headers")
    return dict(value)


def event_from_json(obj: Any) -> Event:
    """Build an Event from the API's JSON object (structured mode); raise EnvelopeError if invalid."""
    if not isinstance(obj, dict):
        raise EnvelopeError("an event must be a JSON object")
    etype = obj.get("type")
    if not isinstance(etype, str) or not _TYPE_RE.fullmatch(etype):
        raise EnvelopeError("type is required: a string like 'order.created'", "type")
    has_data = "data" in obj
    has_b64 = "data_base64" in obj
    if not has_data and not has_b64:
        raise EnvelopeError("data is required", "data")
    if has_data and has_b64:
        raise EnvelopeError("give data or data_base64, not both", "data")
    specversion = obj.get("specversion", SPECVERSION)
    if specversion != SPECVERSION:
        raise EnvelopeError("specversion must be '1.0'", "specversion")
    ct = _opt_str(obj, "datacontenttype") or JSON_CONTENT_TYPE
    if has_b64:
        raw = obj["data_base64"]
        try:
            data = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
        except ValueError:
            data = None
        if data is None:
            raise EnvelopeError("data_base64 must be base64", "data_base64")
        if obj.get("datacontenttype") is None:
            ct = "application/octet-stream"
    else:
        payload = obj["data"]
        is_json = ct.split(";", 1)[0].strip().lower()
        if is_json == JSON_CONTENT_TYPE or is_json.endswith("+json"):
            try:
                data = orjson.dumps(payload)
            except orjson.JSONEncodeError as exc:  # integers beyond 64 bits, lone surrogates, deep nesting
                raise EnvelopeError(f"data is not encodable as JSON: {exc}", "data") from exc
        elif isinstance(payload, str):
            try:
                data = payload.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise EnvelopeError("data is not valid Unicode text", "data") from exc
        else:
            raise EnvelopeError("data must be a string unless datacontenttype is JSON", "data")
    time = obj.get("time")
    if time is not None:
        parse_rfc3339(time)
    key = obj.get("key")
    if key is not None and (
        not isinstance(key, str) or len(key) > MAX_ATTRIBUTE_LENGTH or _BAD_CHARS_RE.search(key)
    ):
        raise EnvelopeError(f"key must be a string of at most {MAX_ATTRIBUTE_LENGTH} characters", "key")
    return Event(
        type=etype,
        data=data,
        id=_opt_str(obj, "id") or new_id(),
        source=_opt_str(obj, "source") or DEFAULT_SOURCE,
        time=time or now_rfc3339(),
        subject=_opt_str(obj, "subject"),
        datacontenttype=ct,
        dataschema=_opt_str(obj, "dataschema"),
        key=key,
        headers=_headers(obj.get("headers")),
    )


def event_to_json(event: Event, omit_absent: bool = False) -> dict[str, Any]:
    """The event as CloudEvents structured JSON (plus ``key`` and ``headers``).

    ``omit_absent``: leave out attributes that are None, empty ``headers`` and null ``data`` (the webhook body),
    rather than show them as null / {} (the API's view). Built directly either way: it runs once per delivery.
    """
    out: dict[str, Any]
    if omit_absent:
        out = {"specversion": SPECVERSION, "id": event.id, "source": event.source, "type": event.type}
        for name, value in (("time", event.time), ("subject", event.subject),
                            ("datacontenttype", event.datacontenttype), ("dataschema", event.dataschema),
                            ("key", event.key)):
            if value is not None:
                out[name] = value
        if event.headers:
            out["headers"] = event.headers
    else:
        out = {
            "specversion": SPECVERSION,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "time": event.time,
            "subject": event.subject,
            "datacontenttype": event.datacontenttype,
            "dataschema": event.dataschema,
            "key": event.key,
            "headers": event.headers,
        }
    # JSON payloads as JSON (null included), other text as a string; anything else, including JSON
    # content that does not parse, as data_base64 so that the bytes survive a round trip.
    if event.is_json:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            pass
        else:
            if data is not None or not omit_absent:  # JSON null is absent data in the webhook form
                out["data"] = data
            return out
    else:
        try:
            out["data"] = event.data.decode("utf-8")
            return out
        except UnicodeDecodeError:
            pass
    out["data_base64"] = base64.b64encode(event.data).decode("ascii")
    return out


def record_to_json(record: Record) -> dict[str, Any]:
    """A stored event as the API shows it: the envelope plus partition and offset."""
    out = event_to_json(record.event)
    out["partition"] = record.partition
    out["offset"] = record.offset
    out["logtime"] = ms_to_rfc3339(record.timestamp_ms)
    return out


def to_kafka(event: Event) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Kafka binary mode: (key, value = data, headers with ce_ attributes and content-type)."""
    headers: list[tuple[str, bytes]] = [("ce_specversion", SPECVERSION.encode())]
    for name in _CE_ATTRS:
        value = getattr(event, name)
        if value is not None:
            headers.append((f"ce_{name}", value.encode("utf-8")))
    headers.append(("content-type", event.datacontenttype.encode("utf-8")))
    for name, value in event.headers.items():
        headers.append((name, value.encode("utf-8")))
    return event.key_bytes(), event.data, headers


def from_kafka(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
    timestamp_ms: int,
    topic: str,
    partition: int,
    offset: int,
) -> Event:
    """Decode a Kafka record, with or without ce_ headers, into an Event with sensible defaults.

    A record from a plain producer gets ``id`` = ``topic-partition-offset`` (stable across reads),
    ``source`` = ``kafka://topic``, ``type`` = ``kafka.record`` and the record timestamp as ``time``.
    """
    attrs: dict[str, str] = {}
    extra: dict[str, str] = {}
    content_type: str | None = None
    for name, raw in headers or ():
        text = (raw or b"").decode("utf-8", errors="replace")
        lname = name.lower()
        if lname.startswith("ce_"):
            attrs[lname[3:]] = text
        elif lname == "content-type":
            content_type = text
        else:
            extra[name] = text
    data = value or b""
    if content_type is None:
        content_type = JSON_CONTENT_TYPE if _looks_like_json(data) else "application/octet-stream"
    return Event(
        type=attrs.get("type") or "kafka.record",
        data=data,
        id=attrs.get("id") or f"{topic}-{partition}-{offset}",
        source=attrs.get("source") or f"{KAFKA_SOURCE}://{topic}",
        time=attrs.get("time") or ms_to_rfc3339(timestamp_ms),
        subject=attrs.get("subject"),
        datacontenttype=content_type,
        dataschema=attrs.get("dataschema"),
        key=None if key is None else key.decode("utf-8", errors="replace"),
        headers=extra,
    )


def _looks_like_json(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True
