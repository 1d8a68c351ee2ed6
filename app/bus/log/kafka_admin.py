"""Topic administration for the Kafka event log: create, describe, grow, retention, delete, offsets."""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
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
_LATEST, _EARLIEST = -1, -2


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


class _SingleFlight:
    """Group commit for a metadata lookup: every caller gets an answer requested after it arrived.

    Concurrent appends to one topic share a single Metadata request per round instead of queueing
    one each (measured: 16 threads went from ~900 to several thousand appends/s), and still see a
    topic grown or re-created by another client before their call began.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._started = 0
        self._finished = 0
        self._running = False
        self._result: int | None | BaseException = None

    def run(self, fetch: Callable[[], int | None]) -> int | None:
        """Return the result of a ``fetch`` that started after this call did."""
        with self._cond:
            need = self._started + 1
            while self._finished < need:
                if not self._running:
                    self._started += 1
                    mine = self._started
                    self._running = True
                    break
                self._cond.wait()
            else:
                return self._unwrap(self._result)
        try:
            result: int | None | BaseException = fetch()
        except BaseException as exc:  # handed to every waiter of this round
            result = exc
        with self._cond:
            self._result = result
            self._finished = mine
            self._running = False
            self._cond.notify_all()
        return self._unwrap(result)

    @staticmethod
    def _unwrap(result: int | None | BaseException) -> int | None:
        if isinstance(result, BaseException):
            raise result
        return result


class KafkaAdmin:
    """Admin operations plus an optional short-lived cache of partition counts (for the append path)."""

    def __init__(
        self,
        conf: dict[str, object],
        replication_factor: int = 1,
        metadata_ttl_s: float = 0.0,
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
        self._flights: dict[str, _SingleFlight] = {}
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
        if not fresh and self._ttl > 0:
            hit = self._cache.get(stream)
            if hit is not None and hit[1] > now:
                return hit[0]
        with self._lock:
            flight = self._flights.setdefault(stream, _SingleFlight())
        count = flight.run(lambda: self._fetch_partitions(stream))
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

    def retention(self, stream: str, check: bool = True) -> int | None:
        """``retention.ms`` of the topic; -1 or absent means forever (None)."""
        if check:
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
    def _list_offsets(self, stream: str, partitions: Iterable[int], spec: int) -> dict[int, int]:
        # ListOffsets for all partitions in one request, through the metadata consumer rather than
        # AdminClient.list_offsets: the admin client keeps the metadata of a topic deleted and
        # re-created elsewhere (UNKNOWN_PARTITION), while this consumer's was just refreshed by
        # partitions(). The timestamps -1 (LATEST) and -2 (EARLIEST) are ListOffsets' own sentinels.
        tps = [TopicPartition(stream, p, spec) for p in partitions]
        if not tps:
            return {}
        try:
            found = self._meta.offsets_for_times(tps, timeout=self.timeout_s)
        except KafkaException as exc:
            raise_for(exc, stream, "list offsets of")
        for tp in found:
            if tp.error is not None:
                raise LogError(f"list offsets of {stream}[{tp.partition}]: {tp.error.str()}")
        return {tp.partition: tp.offset for tp in found}

    def lows(self, stream: str, partitions: Iterable[int]) -> dict[int, int]:
        """First offset still kept, per partition."""
        return self._list_offsets(stream, partitions, _EARLIEST)

    def highs(self, stream: str, partitions: Iterable[int]) -> dict[int, int]:
        """High watermark as the broker reports it (tansu's can trail the real end: see kafka_reader)."""
        return self._list_offsets(stream, partitions, _LATEST)

    def offsets_for_times(self, stream: str, times: dict[int, int]) -> dict[int, int]:
        """The broker's first offset with timestamp >= time per partition; -1 where there is none."""
        tps = [TopicPartition(stream, p, t) for p, t in times.items()]
        try:
            found = self._meta.offsets_for_times(tps, timeout=self.timeout_s)
        except KafkaException as exc:
            raise_for(exc, stream, "look up times in")
        return {tp.partition: tp.offset for tp in found}

    def close(self) -> None:
        """Release the metadata consumer and the admin client (librdkafka frees it when unreferenced)."""
        self._meta.close()
        self.client = None  # type: ignore[assignment]


def _check_retention(retention_ms: int | None) -> None:
    if retention_ms is not None and (not isinstance(retention_ms, int) or retention_ms <= 0):
        raise LogError("retention_ms must be a positive number of milliseconds, or None for forever")
