"""Topic administration for the Kafka event log: create, describe, grow, retention, delete, offsets."""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from app.bus.log.base import (
    MAX_PARTITIONS,
    InvalidPartitionCount,
    LogError,
    StreamExists,
    StreamNotFound,
)

logger = logging.getLogger(__name__)

# Kafka's legal topic names (the broker refuses others with a less helpful message).
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
RETENTION_KEY = "retention.ms"
_NOT_FOUND = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)


class UnsupportedByBroker(LogError):
    """The broker does not implement the Kafka API this operation needs (e.g. tansu: CreatePartitions)."""


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The KafkaError inside a KafkaException, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def raise_for(exc: BaseException, stream: str, action: str) -> None:
    """Re-raise a client error as the event log's own error type."""
    err = kafka_error(exc)
    if err is None:
        raise LogError(f"{action} {stream}: {exc}") from exc
    code = err.code()
    if code in _NOT_FOUND:
        raise StreamNotFound(stream) from exc
    if code == KafkaError.TOPIC_ALREADY_EXISTS:
        raise StreamExists(stream) from exc
    if code == KafkaError._UNSUPPORTED_FEATURE:
        raise UnsupportedByBroker(f"{action} {stream}: {err.str()}") from exc
    raise LogError(f"{action} {stream}: {err.str()}") from exc


def _wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` until true; admin operations return before every broker has caught up."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while not check():
        if time.monotonic() >= deadline:
            raise LogError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class KafkaAdmin:
    """Admin operations plus a short-lived cache of partition counts (the append path asks per call)."""

    def __init__(
        self,
        conf: dict[str, object],
        replication_factor: int = 1,
        metadata_ttl_s: float = 2.0,
        timeout_s: float = 15.0,
    ) -> None:
        self.client = AdminClient(dict(conf))
        # Metadata goes through a consumer, never the admin client or a producer: their Metadata
        # requests may auto-create a missing topic (tansu does; so does Kafka with
        # auto.create.topics.enable), whereas a consumer's do not (allow.auto.create.topics=false).
        self._meta = Consumer({**conf, "group.id": "_apg_metadata", "enable.auto.commit": False})
        self.replication_factor = replication_factor
        self.timeout_s = timeout_s
        self._ttl = metadata_ttl_s
        self._cache: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    # -- metadata -----------------------------------------------------------------------------
    def _fetch_partitions(self, stream: str) -> int | None:
        try:
            md = self._meta.list_topics(topic=stream, timeout=self.timeout_s)
        except KafkaException as exc:
            raise_for(exc, stream, "describe")
        topic = md.topics.get(stream)
        if topic is None or (topic.error is not None and topic.error.code() in _NOT_FOUND):
            return None
        if topic.error is not None:
            raise LogError(f"describe {stream}: {topic.error.str()}")
        return len(topic.partitions)

    def partitions(self, stream: str, fresh: bool = False) -> int:
        """Number of partitions of the topic; StreamNotFound if it does not exist."""
        now = time.monotonic()
        if not fresh:
            hit = self._cache.get(stream)
            if hit is not None and hit[1] > now:
                return hit[0]
        count = self._fetch_partitions(stream)
        if not count:
            self.forget(stream)
            raise StreamNotFound(stream)
        with self._lock:
            self._cache[stream] = (count, now + self._ttl)
        return count

    def forget(self, stream: str) -> None:
        """Drop the cached partition count (after create, grow or delete)."""
        with self._lock:
            self._cache.pop(stream, None)

    # -- topics -------------------------------------------------------------------------------
    def create(self, stream: str, partitions: int, retention_ms: int | None) -> None:
        """Create the topic with its retention; wait until metadata shows it."""
        if not _TOPIC_RE.match(stream):
            raise LogError(f"invalid stream name {stream!r}: Kafka topics use [A-Za-z0-9._-], at most 249")
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidPartitionCount(f"partitions must be 1..{MAX_PARTITIONS}")
        _check_retention(retention_ms)
        config = {RETENTION_KEY: str(-1 if retention_ms is None else retention_ms)}
        topic = NewTopic(stream, partitions, self.replication_factor, config=config)
        future = self.client.create_topics([topic], operation_timeout=self.timeout_s)[stream]
        try:
            future.result()
        except KafkaException as exc:
            raise_for(exc, stream, "create")
        self.forget(stream)
        _wait_until(lambda: self._fetch_partitions(stream) == partitions, self.timeout_s, f"topic {stream}")

    def delete(self, stream: str) -> None:
        """Delete the topic and wait until metadata no longer lists it (Kafka deletes asynchronously)."""
        future = self.client.delete_topics([stream], operation_timeout=self.timeout_s)[stream]
        try:
            future.result()
        except KafkaException as exc:
            raise_for(exc, stream, "delete")
        finally:
            self.forget(stream)
        _wait_until(lambda: self._fetch_partitions(stream) is None, self.timeout_s, f"deletion of {stream}")

    def grow(self, stream: str, partitions: int) -> None:
        """Raise the partition count; refuse to shrink or to pass the maximum."""
        current = self.partitions(stream, fresh=True)
        if partitions < current:
            raise InvalidPartitionCount(f"{stream} has {current} partitions; partitions can only grow")
        if partitions > MAX_PARTITIONS:
            raise InvalidPartitionCount(f"at most {MAX_PARTITIONS} partitions")
        if partitions == current:
            return  # Kafka answers INVALID_PARTITIONS to a no-op; the log treats it as done.
        future = self.client.create_partitions([NewPartitions(stream, partitions)], operation_timeout=self.timeout_s)
        try:
            future[stream].result()
        except KafkaException as exc:
            raise_for(exc, stream, "grow partitions of")
        finally:
            self.forget(stream)
        _wait_until(lambda: self._fetch_partitions(stream) == partitions, self.timeout_s, f"partitions of {stream}")

    def retention(self, stream: str) -> int | None:
        """``retention.ms`` of the topic; -1 or absent means forever (None)."""
        self.partitions(stream, fresh=True)  # describe_configs of a missing topic may answer {} (tansu).
        resource = ConfigResource(ResourceType.TOPIC, stream)
        try:
            configs = self.client.describe_configs([resource], request_timeout=self.timeout_s)[resource].result()
        except KafkaException as exc:
            raise_for(exc, stream, "describe configs of")
        entry = configs.get(RETENTION_KEY)
        if entry is None or entry.value is None:
            return None
        value = int(entry.value)
        return None if value < 0 else value

    def set_retention(self, stream: str, retention_ms: int | None) -> None:
        """Set ``retention.ms`` (-1 = forever; deleting the key would fall back to the broker's 7 days)."""
        _check_retention(retention_ms)
        self.partitions(stream, fresh=True)
        value = str(-1 if retention_ms is None else retention_ms)
        entry = ConfigEntry(RETENTION_KEY, value, incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ResourceType.TOPIC, stream, incremental_configs=[entry])
        # incremental_alter_configs (KIP-339): the legacy AlterConfigs replaces every setting and is
        # deprecated; tansu implements only the incremental one.
        futures = self.client.incremental_alter_configs([resource], request_timeout=self.timeout_s)
        try:
            for future in futures.values():
                future.result()
        except KafkaException as exc:
            raise_for(exc, stream, "set retention of")

    # -- offsets ------------------------------------------------------------------------------
    def list_offsets(self, stream: str, partitions: Iterable[int], spec: OffsetSpec) -> dict[int, int]:
        """Earliest or latest offsets of several partitions in one request (ListOffsets)."""
        request = {TopicPartition(stream, p): spec for p in partitions}
        if not request:
            return {}
        futures = self.client.list_offsets(request, request_timeout=self.timeout_s)
        out: dict[int, int] = {}
        try:
            for tp, future in futures.items():
                out[tp.partition] = future.result().offset
        except KafkaException as exc:
            raise_for(exc, stream, "list offsets of")
        return out

    def lows(self, stream: str, partitions: Iterable[int]) -> dict[int, int]:
        """First offset still kept, per partition."""
        return self.list_offsets(stream, partitions, OffsetSpec.earliest())

    def highs(self, stream: str, partitions: Iterable[int]) -> dict[int, int]:
        """High watermark as the broker reports it (tansu's can trail the real end: see kafka_reader)."""
        return self.list_offsets(stream, partitions, OffsetSpec.latest())

    def offsets_for_times(self, stream: str, times: dict[int, int]) -> dict[int, int]:
        """The broker's first offset with timestamp >= time per partition; -1 where there is none."""
        tps = [TopicPartition(stream, p, t) for p, t in times.items()]
        try:
            found = self._meta.offsets_for_times(tps, timeout=self.timeout_s)
        except KafkaException as exc:
            raise_for(exc, stream, "look up times in")
        return {tp.partition: tp.offset for tp in found}

    def close(self) -> None:
        """Release the metadata consumer."""
        self._meta.close()


def _check_retention(retention_ms: int | None) -> None:
    if retention_ms is not None and (not isinstance(retention_ms, int) or retention_ms <= 0):
        raise LogError("retention_ms must be a positive number of milliseconds, or None for forever")
