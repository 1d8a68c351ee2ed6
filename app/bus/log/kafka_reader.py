"""Reading partitions for the Kafka event log: a pool of assign()-only consumers and a bounded drain loop."""
from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from app.bus.envelope import Record, from_kafka
from app.bus.log.base import InvalidOffset, LogError, StreamNotFound

logger = logging.getLogger(__name__)

_POLL_SLICE_S = 0.1
# A long poll returns this long after its first record at the latest (what is buffered by then comes along).
LINGER_S = 0.002


class ReaderPool:
    """Consumers kept warm (connected, metadata cached) and lent to one thread at a time.

    A Consumer is safe to share between threads call by call, but assign()+poll() is a sequence,
    so each read leases a consumer for its duration. They never join a group or commit. When all
    are lent (long-polling fetches hold theirs), a new one is made rather than making reads wait;
    at most ``size`` are kept idle.
    """

    def __init__(self, conf: Mapping[str, object], size: int = 4) -> None:
        self._conf = {
            **conf,
            "group.id": "_apg_reader",  # required by librdkafka; never joined, never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # EOF events tell us where a partition really ends (see drain); the broker reports the
            # end of a partition in every fetch response.
            "enable.partition.eof": True,
            # A read beyond the end must be an error, not a silent jump to the start or end.
            "auto.offset.reset": "error",
            # A fetch at the end of a partition returns after this long: it bounds the latency of
            # noticing the end of a partition (default 500 ms would dominate a small read). Reads are
            # short (a consumer is unassigned when idle), so polling the broker this often costs little;
            # with 20 ms a read at the head of a partition took 16 ms (p50), with 5 ms 9 ms.
            "fetch.wait.max.ms": 5,
            # No back-off before the next fetch of a partition whose queue is not empty (librdkafka's
            # fetch.queue.backoff.ms): measured at 1,000 events/s, a record's wait from append to read
            # p95 26.8 -> 17.6 ms.
            "fetch.queue.backoff.ms": 0,
        }
        self._idle: queue.LifoQueue[Consumer] = queue.LifoQueue(maxsize=size)
        self._closed = False
        self._generation = 0

    @contextmanager
    def lease(self) -> Iterator[Consumer]:
        """Lend a consumer; it is unassigned and returned to the pool afterwards."""
        if self._closed:
            raise LogError("the event log is closed")
        generation = self._generation
        try:
            consumer = self._idle.get_nowait()
        except queue.Empty:
            consumer = Consumer(self._conf)
        healthy = False
        try:
            yield consumer
            healthy = True
        finally:
            self._give_back(consumer, healthy and generation == self._generation)

    def _give_back(self, consumer: Consumer, healthy: bool) -> None:
        try:
            consumer.unassign()  # stops background fetching while idle
        except Exception:  # noqa: BLE001 - a broken consumer is closed, not reused
            healthy = False
        if healthy and not self._closed:
            try:
                self._idle.put_nowait(consumer)
                return
            except queue.Full:
                pass
        _close_quietly(consumer)

    def retire(self) -> None:
        """Close the idle consumers now and the lent ones when they come back.

        Called before a topic is deleted. Workaround for tansu + librdkafka 2.16: a consumer that
        has fetched from a topic crashes the process (NULL topic name in
        rd_kafka_metadata_update_op) soon after that topic is deleted, because tansu answers its
        fetches with an all-zero topic id. Apache Kafka answers UNKNOWN_TOPIC_ID; retiring is cheap
        there too (the next read connects a fresh consumer).
        """
        self._generation += 1
        while True:
            try:
                _close_quietly(self._idle.get_nowait())
            except queue.Empty:
                return

    def close(self) -> None:
        """Close every idle consumer (lent ones close when they come back)."""
        self._closed = True
        self.retire()


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except Exception:  # noqa: BLE001
        logger.debug("closing a reader consumer failed", exc_info=True)


def drain(
    consumer: Consumer,
    stream: str,
    starts: Mapping[int, int],
    limit: int,
    timeout_s: float,
    wait_s: float = 0.0,
    per_partition_limit: int | None = None,
) -> dict[int, list[Record]]:
    """Read the partitions from their start offsets until each reaches its end or a limit.

    ``limit`` caps the records in all, ``per_partition_limit`` those of each partition.

    The end is where the broker sends a partition-EOF event, not the high watermark from
    ListOffsets: tansu's ListOffsets can trail the real end by the last batch (DESIGN.md), while
    the EOF follows the fetch responses. With ``wait_s`` > 0 and nothing read, keep waiting that
    long for new records (long poll); and once something was read, return within ``LINGER_S`` even
    if a partition has not reported its end: under a steady trickle each new record postpones its
    partition's EOF, and a long poll (a consumer's fetch) must return soon after data arrives, as
    Kafka's own fetch does. ``timeout_s`` bounds the whole read if EOFs never come.
    """
    out: dict[int, list[Record]] = {p: [] for p in starts}
    if limit <= 0 or not starts:
        return out
    next_offset = dict(starts)
    at_end: set[int] = set()
    full: set[int] = set()
    cap = per_partition_limit if per_partition_limit is not None else limit
    count = 0
    now = time.monotonic()
    hard_deadline = now + max(timeout_s, wait_s + timeout_s)
    wait_deadline = now + wait_s
    linger_deadline = float("inf")  # set when the first record of a long poll arrives
    consumer.assign([TopicPartition(stream, p, o) for p, o in starts.items()])
    while count < limit:
        now = time.monotonic()
        if len(at_end | full) == len(starts) and (count > 0 or now >= wait_deadline):
            break
        if now >= linger_deadline:
            break
        if now >= hard_deadline:
            logger.warning("read of %s stopped after %.1fs without reaching the end of %s",
                           stream, timeout_s, sorted(set(starts) - at_end))
            break
        first = consumer.poll(min(_POLL_SLICE_S, hard_deadline - now, max(0.0, linger_deadline - now)))
        if first is None:
            continue
        batch = [first]
        if limit - count > 1:
            batch.extend(consumer.consume(limit - count - 1, timeout=0))  # what is already buffered
        for msg in batch:
            err = msg.error()
            partition = msg.partition()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF and partition in next_offset:
                    if msg.offset() >= next_offset[partition]:
                        at_end.add(partition)
                    continue
                _raise_read_error(err, stream, partition)
                continue
            if partition not in next_offset or msg.offset() < next_offset[partition]:
                continue  # prefetched for an earlier assignment of this pooled consumer
            if count >= limit:
                break
            if partition in full:
                continue
            out[partition].append(_record(msg, stream))
            if wait_s > 0 and count == 0:
                linger_deadline = time.monotonic() + LINGER_S
            next_offset[partition] = msg.offset() + 1
            at_end.discard(partition)
            count += 1
            if len(out[partition]) >= cap:
                full.add(partition)
    return out


def _raise_read_error(err: KafkaError, stream: str, partition: int | None) -> None:
    code = err.code()
    if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
        raise StreamNotFound(stream)
    if code in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
        raise InvalidOffset(f"offset out of range in {stream}[{partition}]: {err.str()}")
    if err.fatal():
        raise LogError(f"read {stream}[{partition}]: {err.str()}")
    logger.warning("transient error reading %s[%s]: %s", stream, partition, err.str())


def _record(msg: Message, stream: str) -> Record:
    kind, ts = msg.timestamp()
    timestamp_ms = ts if kind != 0 and ts is not None and ts >= 0 else int(time.time() * 1000)
    event = from_kafka(msg.key(), msg.value(), msg.headers(), timestamp_ms, stream, msg.partition(), msg.offset())
    return Record(stream=stream, partition=msg.partition(), offset=msg.offset(), timestamp_ms=timestamp_ms,
                  event=event)


def probe_ends(
    consumer: Consumer, stream: str, lows: Mapping[int, int], highs: Mapping[int, int], timeout_s: float
) -> dict[int, int]:
    """The real end of each partition: where a read from the reported high watermark - 1 hits EOF.

    Workaround for tansu, whose ListOffsets(latest) answers the base offset of the last batch + 1.
    On Apache Kafka this reads one record per partition and confirms the reported value.
    """
    starts = {p: max(lows.get(p, 0), highs[p] - 1) for p in highs}
    ends = dict(highs)
    consumer.assign([TopicPartition(stream, p, o) for p, o in starts.items()])
    pending = set(starts)
    deadline = time.monotonic() + timeout_s
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logger.warning("could not confirm the end of %s%s; using the reported high watermark",
                           stream, sorted(pending))
            break
        msg = consumer.poll(min(_POLL_SLICE_S, remaining))
        if msg is None or msg.partition() not in pending:
            continue
        err = msg.error()
        if err is None:
            if msg.offset() >= starts[msg.partition()]:
                ends[msg.partition()] = max(ends[msg.partition()], msg.offset() + 1)
        elif err.code() == KafkaError._PARTITION_EOF:
            if msg.offset() >= starts[msg.partition()]:
                ends[msg.partition()] = max(ends[msg.partition()], msg.offset())
                pending.discard(msg.partition())
        else:
            _raise_read_error(err, stream, msg.partition())
    return ends


def first_at_or_after(
    consumer: Consumer, stream: str, candidates: Mapping[int, int], times: Mapping[int, int],
    ends: Mapping[int, int], timeout_s: float,
) -> dict[int, int]:
    """Check the broker's offsets-for-times answers by reading: skip records older than the time.

    Workaround for tansu, which answers 0 when no record is that recent and may answer the base
    offset of a batch. Apache Kafka's answer is exact: the first record read already qualifies.
    """
    result = dict(candidates)
    todo = {p: o for p, o in candidates.items() if o < ends[p]}
    if not todo:
        return result
    consumer.assign([TopicPartition(stream, p, o) for p, o in todo.items()])
    deadline = time.monotonic() + timeout_s
    while todo:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logger.warning("could not check time offsets of %s%s", stream, sorted(todo))
            break
        msg = consumer.poll(min(_POLL_SLICE_S, remaining))
        if msg is None or msg.partition() not in todo or msg.offset() < todo[msg.partition()]:
            continue
        partition = msg.partition()
        err = msg.error()
        if err is None:
            _, ts = msg.timestamp()
            if ts >= times[partition]:
                result[partition] = msg.offset()
                del todo[partition]
            else:
                todo[partition] = msg.offset() + 1
        elif err.code() == KafkaError._PARTITION_EOF:
            result[partition] = msg.offset()  # no record is that recent: the end
            del todo[partition]
        else:
            _raise_read_error(err, stream, partition)
    return result
