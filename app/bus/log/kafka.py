"""The Kafka event log: a stream is a topic, events are CloudEvents in Kafka binary mode (confluent-kafka)."""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from app.bus.envelope import Event, Record, to_kafka
from app.bus.log.base import (
    InvalidOffset,
    InvalidPartition,
    LogError,
    PartitionLag,
    Position,
    ResetTarget,
    StreamInfo,
    StreamNotFound,
    Watermark,
)
from app.bus.log.kafka_admin import KafkaAdmin, UnsupportedByBroker, kafka_error
from app.bus.log.kafka_groups import KafkaGroups
from app.bus.log.kafka_reader import ReaderPool, drain, first_at_or_after, probe_ends
from app.bus.partitioner import RoundRobin, partition_for_key

logger = logging.getLogger(__name__)

__all__ = ["KafkaEventLog", "UnsupportedByBroker"]

_MESSAGE_TIMEOUT_MS = 30_000


class _Delivery:
    """Delivery reports of one append call, so concurrent appends never wait on each other's messages."""

    __slots__ = ("positions", "errors", "_pending", "_lock", "done")

    def __init__(self, count: int) -> None:
        self.positions: list[Position | None] = [None] * count
        self.errors: list[KafkaError] = []
        self._pending = count
        self._lock = threading.Lock()
        self.done = threading.Event()
        if count == 0:
            self.done.set()

    def report(self, index: int, err: KafkaError | None, msg: Message) -> None:
        """Delivery callback (runs on the poller thread)."""
        if err is not None:
            self.errors.append(err)
        else:
            self.positions[index] = Position(msg.partition(), msg.offset())
        self._settle()

    def abandon(self, count: int) -> None:
        """Count messages that were never queued as settled."""
        for _ in range(count):
            self._settle()

    def _settle(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending <= 0:
                self.done.set()


class KafkaEventLog:
    """EventLog on Apache Kafka (or any Kafka-protocol broker) through librdkafka.

    ``exact_offsets`` checks the broker's high watermarks and time lookups by reading (one small
    fetch each): needed on tansu, harmless but unnecessary on Apache Kafka, where production may
    pass False. ``metadata_ttl_s`` lets appends reuse a topic's partition count for that long
    (0: ask the broker on every append, ~0.3 ms, so a topic grown or re-created elsewhere is seen
    at once and keys never land in a stale partition).
    """

    def __init__(
        self,
        bootstrap: str,
        replication_factor: int = 1,
        readers: int = 4,
        read_timeout_s: float = 5.0,
        exact_offsets: bool = True,
        metadata_ttl_s: float = 0.0,
        linger_ms: int = 0,  # measured: lowest single-append latency; batching still happens under load
        client_config: Mapping[str, object] | None = None,
    ) -> None:
        base: dict[str, object] = {"bootstrap.servers": bootstrap, **(client_config or {})}
        self._admin = KafkaAdmin(base, replication_factor=replication_factor, metadata_ttl_s=metadata_ttl_s)
        self._readers = ReaderPool(base, size=readers)
        self._read_timeout_s = read_timeout_s
        self._exact = exact_offsets
        self._round_robin = RoundRobin()
        self._producer = Producer({
            **base,
            "acks": "all",
            "enable.idempotence": True,  # no duplicates or reordering on retries
            # Batches concurrent appends; each append still waits for its own reports, so keep it small.
            "linger.ms": linger_ms,
            "compression.type": "lz4",
            # Unused while we pass partition= ourselves; set so any keyed record without an explicit
            # partition still lands where Java's default partitioner (murmur2) puts it.
            "partitioner": "murmur2_random",
            "message.timeout.ms": _MESSAGE_TIMEOUT_MS,
        })
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._poller_lock = threading.Lock()
        self.groups_api = KafkaGroups(self)

    # -- stream admin -------------------------------------------------------------------------
    def create_stream(self, stream: str, partitions: int, retention_ms: int | None = None) -> None:
        """Create the topic; StreamExists if it does."""
        self._admin.create(stream, partitions, retention_ms)

    def stream_info(self, stream: str) -> StreamInfo:
        """Partitions (metadata) and retention (topic config)."""
        partitions = self._admin.partitions(stream, fresh=True)
        return StreamInfo(name=stream, partitions=partitions, retention_ms=self._admin.retention(stream, check=False))

    def grow_partitions(self, stream: str, partitions: int) -> None:
        """CreatePartitions; UnsupportedByBroker where the broker lacks it (tansu 0.6)."""
        self._admin.grow(stream, partitions)

    def set_retention(self, stream: str, retention_ms: int | None) -> None:
        """Set the topic's retention.ms (None: forever)."""
        self._admin.set_retention(stream, retention_ms)

    def delete_stream(self, stream: str) -> None:
        """Delete the topic; Kafka drops the committed offsets of its partitions with it."""
        self._readers.retire()  # see ReaderPool.retire: no consumer of ours may outlive the topic
        self._admin.delete(stream)

    def watermarks(self, stream: str) -> list[Watermark]:
        """Low and high offsets of every partition."""
        parts = range(self._admin.partitions(stream, fresh=True))
        lows = self._admin.lows(stream, parts)
        highs = self.ends(stream, parts, lows)
        return [Watermark(partition=p, low=lows[p], high=highs[p]) for p in parts]

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Nothing to do: the Kafka broker deletes old segments itself, by each topic's retention.ms."""
        return 0

    # -- events -------------------------------------------------------------------------------
    def append(self, stream: str, events: Sequence[Event]) -> list[Position]:
        """Produce with acks=all and wait for every delivery report; positions in input order.

        Not atomic across partitions (that needs Kafka transactions): on a failure some events may
        be stored, and LogError is raised.
        """
        if self._stop.is_set():
            raise LogError("the event log is closed")
        partitions = self._admin.partitions(stream)
        if not events:
            return []
        self._ensure_poller()
        delivery = _Delivery(len(events))
        failure: LogError | None = None
        queued = 0
        for index, event in enumerate(events):
            key, value, headers = to_kafka(event)
            # Our own murmur2 (identical to Kafka's) so the SQL and Kafka backends agree exactly.
            partition = partition_for_key(key, partitions) if key is not None else self._round_robin.next(partitions)
            try:
                self._produce(stream, partition, key, value, headers, functools.partial(delivery.report, index))
            except LogError as exc:
                failure = exc
                break
            queued += 1
        delivery.abandon(len(events) - queued)
        if not delivery.done.wait(_MESSAGE_TIMEOUT_MS / 1000 + 10):
            raise LogError(f"append to {stream}: delivery not confirmed in time")
        if delivery.errors:
            err = delivery.errors[0]
            if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
                raise StreamNotFound(stream)
            raise LogError(f"append to {stream}: {len(delivery.errors)} of {len(events)} failed: {err.str()}")
        if failure is not None:
            raise failure
        return [p for p in delivery.positions if p is not None]

    def _produce(self, stream: str, partition: int, key: bytes | None, value: bytes,
                 headers: list[tuple[str, bytes]], callback: object) -> None:
        deadline = time.monotonic() + _MESSAGE_TIMEOUT_MS / 1000
        refreshed = False
        while True:
            try:
                self._producer.produce(stream, value=value, key=key, partition=partition, headers=headers,
                                       on_delivery=callback)
                return
            except BufferError as exc:
                # The local queue is full: the poller thread drains it as deliveries are confirmed.
                if time.monotonic() >= deadline:
                    raise LogError(f"append to {stream}: the producer queue stayed full") from exc
                time.sleep(0.005)
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is None or err.code() != KafkaError._UNKNOWN_PARTITION or refreshed:
                    raise LogError(f"append to {stream}: {exc}") from exc
                # The producer's metadata predates a partition increase (or a re-created topic) that
                # our fresh partition count already knows: refresh it once and retry.
                self._producer.list_topics(topic=stream, timeout=5)
                refreshed = True

    def _ensure_poller(self) -> None:
        if self._poller is not None:
            return
        with self._poller_lock:
            if self._poller is None and not self._stop.is_set():
                self._poller = threading.Thread(target=self._poll_loop, name="kafka-log-producer", daemon=True)
                self._poller.start()

    def _poll_loop(self) -> None:
        # One thread serves every delivery report, so appending threads just wait on their own event.
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def read(
        self,
        stream: str,
        partition: int,
        from_offset: int | None = None,
        from_time_ms: int | None = None,
        limit: int = 100,
    ) -> list[Record]:
        """Records of one partition from an offset (or the first at/after a time), up to ``limit``."""
        self._check_partition(stream, partition)
        if from_offset is not None and from_time_ms is not None:
            raise ValueError("give from_offset or from_time_ms, not both")
        if from_offset is not None and from_offset < 0:
            raise InvalidOffset(f"negative offset {from_offset}")
        if limit <= 0:
            return []
        low = self._admin.lows(stream, [partition])[partition]
        if from_time_ms is not None:
            start = self.offset_for_time(stream, partition, from_time_ms)
        elif from_offset is None:
            start = low
        else:
            start = max(from_offset, low)  # records before the low watermark are gone (retention)
            if start > self._admin.highs(stream, [partition])[partition]:
                # Beyond the reported end: nothing to read, unless that report trails the real end.
                if start >= self.ends(stream, [partition])[partition]:
                    return []
        with self._readers.lease() as consumer:
            return drain(consumer, stream, {partition: start}, limit, self._read_timeout_s)[partition]

    def offset_for_time(self, stream: str, partition: int, time_ms: int) -> int:
        """The first offset with log time >= ``time_ms``; the end of the partition if none."""
        self._check_partition(stream, partition)
        return self.offsets_for_time(stream, {partition: time_ms})[partition]

    # -- helpers shared with kafka_groups -------------------------------------------------------
    def partitions(self, stream: str, fresh: bool = False) -> int:
        """Partition count of the topic (StreamNotFound if absent)."""
        return self._admin.partitions(stream, fresh=fresh)

    def lows(self, stream: str, parts: Sequence[int] | range) -> dict[int, int]:
        """Low watermarks."""
        return self._admin.lows(stream, parts)

    def ends(self, stream: str, parts: Sequence[int] | range, lows: Mapping[int, int] | None = None) -> dict[int, int]:
        """Next offset to be written per partition (the reported high watermark, checked if exact_offsets)."""
        highs = self._admin.highs(stream, parts)
        if not self._exact or not highs:
            return highs
        lows = lows if lows is not None else self._admin.lows(stream, parts)
        with self._readers.lease() as consumer:
            return probe_ends(consumer, stream, lows, highs, self._read_timeout_s)

    def offsets_for_time(self, stream: str, times: Mapping[int, int]) -> dict[int, int]:
        """First offset at/after each partition's time; the end where no record is that recent."""
        parts = sorted(times)
        ends = self.ends(stream, parts)
        found = self._admin.offsets_for_times(stream, dict(times))
        candidates = {p: ends[p] if found.get(p, -1) < 0 else min(found[p], ends[p]) for p in parts}
        if not self._exact:
            return candidates
        with self._readers.lease() as consumer:
            return first_at_or_after(consumer, stream, candidates, times, ends, self._read_timeout_s)

    def drain(self, stream: str, starts: Mapping[int, int], limit: int, wait_s: float = 0.0,
              per_partition_limit: int | None = None) -> dict[int, list[Record]]:
        """Read several partitions from their start offsets (see kafka_reader.drain)."""
        with self._readers.lease() as consumer:
            return drain(consumer, stream, starts, limit, self._read_timeout_s, wait_s, per_partition_limit)

    @property
    def admin(self) -> KafkaAdmin:
        """The admin helper (used by kafka_groups)."""
        return self._admin

    def _check_partition(self, stream: str, partition: int) -> int:
        count = self._admin.partitions(stream)
        if not 0 <= partition < count:
            count = self._admin.partitions(stream, fresh=True)  # it may have grown meanwhile
            if not 0 <= partition < count:
                raise InvalidPartition(f"{stream} has partitions 0..{count - 1}, not {partition}")
        return count

    def check_offsets(self, stream: str, offsets: Mapping[int, int]) -> None:
        """InvalidOffset unless 0 <= offset <= end for each partition: one ListOffsets request for all of them;
        the exact end is probed only for partitions where that cheap answer says no."""
        for partition, offset in offsets.items():
            if offset < 0:
                raise InvalidOffset(f"negative offset {offset} of {stream}[{partition}]")
        if not offsets:
            return
        highs = self._admin.highs(stream, sorted(offsets))
        beyond = sorted(p for p, o in offsets.items() if o > highs[p])
        if not beyond:
            return
        ends = self.ends(stream, beyond)
        for partition in beyond:
            if offsets[partition] > ends[partition]:
                raise InvalidOffset(f"offset {offsets[partition]} is beyond the end of {stream}[{partition}]")

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
        return self.groups_api.fetch(group, stream, max_records, wait_s, partitions)

    def commit(self, group: str, stream: str, offsets: Mapping[int, int]) -> None:
        """Store the group's next offsets to read."""
        self.groups_api.commit(group, stream, offsets)

    def commit_read(self, group: str, stream: str, offsets: Mapping[int, int]) -> None:
        """``commit`` of offsets that follow records the caller has just read (the webhook dispatcher's).

        They are within their partitions by construction, so the end check (a ListOffsets request to the
        broker for every commit) is skipped; partitions are still checked against the stream.
        """
        self.groups_api.commit(group, stream, offsets, verify_ends=False)

    def committed(self, group: str, stream: str) -> dict[int, int]:
        """Committed offsets by partition."""
        return self.groups_api.committed(group, stream)

    def lag(self, group: str, stream: str) -> list[PartitionLag]:
        """Committed, end and lag for every partition."""
        return self.groups_api.lag(group, stream)

    def reset(self, group: str, stream: str, to: ResetTarget) -> dict[int, int]:
        """Move the group's offsets; return the new ones."""
        return self.groups_api.reset(group, stream, to)

    def groups(self, stream: str | None = None) -> list[tuple[str, str]]:
        """(group, stream) pairs with committed offsets."""
        return self.groups_api.groups(stream)

    def delete_group(self, group: str, stream: str) -> None:
        """Delete the consumer group (a subscription's group reads one stream only); no-op when it is unknown."""
        self.groups_api.delete(group, stream)

    def close(self) -> None:
        """Deliver what is queued (bounded), stop the poller and close the consumers; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        remaining = self._producer.flush(10)
        if remaining:
            logger.warning("closing the Kafka event log with %d undelivered messages", remaining)
            self._producer.purge()
        self._producer.close()
        self._readers.close()
        self._admin.close()
