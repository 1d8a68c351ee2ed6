"""The EventLog protocol: what every backend (SQL, Kafka) promises. The conformance suite checks it."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.bus.envelope import Event, Record


class LogError(Exception):
    """Base of the event log's errors."""


class StreamNotFound(LogError):
    """The stream (topic) does not exist."""


class StreamExists(LogError):
    """A stream of that name exists already."""


class InvalidPartition(LogError):
    """A partition number outside ``0 .. partitions - 1``."""


class InvalidOffset(LogError):
    """A negative offset, or one beyond the end of the partition."""


class InvalidPartitionCount(LogError):
    """Partitions may only grow, and stay within the configured maximum."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where an appended event landed."""

    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Watermark:
    """``low`` = first offset still kept, ``high`` = the next offset to be written."""

    partition: int
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """A group's position in one partition. ``committed`` is None before the first commit."""

    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What the log knows of a stream."""

    name: str
    partitions: int
    retention_ms: int | None


# What a group reset moves to: "earliest", "latest", {"time": epoch_ms} or {"offsets": {partition: offset}}.
ResetTarget = str | Mapping[str, object]

MAX_PARTITIONS = 256


class EventLog(Protocol):
    """Durable, ordered-per-partition storage of events, with consumer groups.

    Stream names given to the log are fully qualified (``<tenant>.<stream>``); the log knows no tenants.
    Group names are fully qualified too. Offsets are "next to read", as in Kafka.
    """

    # -- stream admin -------------------------------------------------------------------------
    def create_stream(self, stream: str, partitions: int, retention_ms: int | None = None) -> None:
        """Create a stream; StreamExists if it does."""
        ...

    def stream_info(self, stream: str) -> StreamInfo:
        """Partitions and retention; StreamNotFound if absent."""
        ...

    def grow_partitions(self, stream: str, partitions: int) -> None:
        """Raise the partition count (never lower)."""
        ...

    def set_retention(self, stream: str, retention_ms: int | None) -> None:
        """Change how long events are kept (None: forever)."""
        ...

    def delete_stream(self, stream: str) -> None:
        """Delete the stream, its events and its groups' offsets."""
        ...

    def watermarks(self, stream: str) -> list[Watermark]:
        """Low and high offsets of every partition."""
        ...

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Drop events older than their stream's retention; return how many were dropped (if known)."""
        ...

    # -- events -------------------------------------------------------------------------------
    def append(self, stream: str, events: Sequence[Event]) -> list[Position]:
        """Append events atomically-per-request and durably; positions in input order."""
        ...

    def read(
        self,
        stream: str,
        partition: int,
        from_offset: int | None = None,
        from_time_ms: int | None = None,
        limit: int = 100,
    ) -> list[Record]:
        """Events of one partition in offset order, from an offset or the first at/after a time."""
        ...

    def offset_for_time(self, stream: str, partition: int, time_ms: int) -> int:
        """The first offset whose log time is >= ``time_ms`` (the high watermark if none)."""
        ...

    # -- consumer groups ----------------------------------------------------------------------
    def fetch(
        self,
        group: str,
        stream: str,
        max_records: int = 500,
        wait_s: float = 0.0,
        partitions: Sequence[int] | None = None,
    ) -> list[Record]:
        """Events after the group's committed offsets (earliest when none); does not commit."""
        ...

    def commit(self, group: str, stream: str, offsets: Mapping[int, int]) -> None:
        """Store the group's next offsets to read."""
        ...

    def committed(self, group: str, stream: str) -> dict[int, int]:
        """Committed offsets by partition (partitions never committed are absent)."""
        ...

    def lag(self, group: str, stream: str) -> list[PartitionLag]:
        """Committed, end and lag for every partition."""
        ...

    def reset(self, group: str, stream: str, to: ResetTarget) -> dict[int, int]:
        """Move the group's offsets; return the new ones."""
        ...

    def groups(self, stream: str | None = None) -> list[tuple[str, str]]:
        """(group, stream) pairs that have committed offsets, optionally for one stream."""
        ...

    def delete_group(self, group: str, stream: str) -> None:
        """Forget the group's committed offsets on the stream (nothing happens when it has none)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
