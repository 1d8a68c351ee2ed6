"""The event log: one protocol, a SQL backend and a Kafka backend."""
from __future__ import annotations

from app.bus.log.base import (
    EventLog,
    InvalidOffset,
    InvalidPartition,
    InvalidPartitionCount,
    LogError,
    PartitionLag,
    Position,
    StreamExists,
    StreamInfo,
    StreamNotFound,
    Watermark,
)

__all__ = [
    "EventLog",
    "InvalidOffset",
    "InvalidPartition",
    "InvalidPartitionCount",
    "LogError",
    "PartitionLag",
    "Position",
    "StreamExists",
    "StreamInfo",
    "StreamNotFound",
    "Watermark",
    "open_log",
]


def open_log(url: str, database_url: str | None = None, **options: object) -> EventLog:
    """Open the backend an ``EVENT_LOG_URL`` names: ``sql`` (in ``database_url``) or ``kafka://hosts``."""
    if url == "sql" or url.startswith(("sqlite", "postgresql")):
        from app.bus.log.sql import SqlEventLog

        target = database_url if url == "sql" else url
        if not target:
            raise ValueError("the SQL event log needs a database URL")
        return SqlEventLog(target, **options)  # type: ignore[arg-type]
    if url.startswith("kafka://"):
        from app.bus.log.kafka import KafkaEventLog

        return KafkaEventLog(url.removeprefix("kafka://"), **options)  # type: ignore[arg-type]
    raise ValueError(f"unknown EVENT_LOG_URL {url!r}: use 'sql' or 'kafka://host:9092'")
