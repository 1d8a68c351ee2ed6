"""The Kafka event log shares its topics with any Kafka client: binary-mode CloudEvents, Java's partitioning."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from app.bus.envelope import Event
from app.bus.log.kafka import KafkaEventLog
from app.bus.partitioner import partition_for_key


@pytest.fixture(scope="module")
def kafka_log(kafka_bootstrap: str) -> Iterator[KafkaEventLog]:
    """One event log for the module: these tests are about the data on the wire, not the client's life."""
    log = KafkaEventLog(kafka_bootstrap)
    try:
        yield log
    finally:
        log.close()


@pytest.fixture
def topic() -> str:
    """A fresh topic name, as the log names streams (tenant.stream)."""
    return f"interop{uuid.uuid4().hex[:8]}.events"


def plain_producer(bootstrap: str) -> Producer:
    """A producer configured like a Java client's defaults (murmur2 for keyed records)."""
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "partitioner": "murmur2_random", "linger.ms": 0})


def produce_all(producer: Producer, topic: str, records: list[dict]) -> list[Message]:
    """Produce and wait for every delivery report; return the delivered messages in input order."""
    delivered: dict[int, Message] = {}
    errors: list[KafkaError] = []

    def report(index: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered[index] = msg

    for index, fields in enumerate(records):
        producer.produce(topic, on_delivery=lambda err, msg, i=index: report(i, err, msg), **fields)
    assert producer.flush(10) == 0
    assert not errors, errors
    return [delivered[i] for i in range(len(records))]


def consume_partition(bootstrap: str, topic: str, partition: int, count: int) -> list[Message]:
    """Read ``count`` records of one partition with a plain consumer (assign, no group)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "interop-plain", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    out: list[Message] = []
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        deadline = time.monotonic() + 10
        while len(out) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(msg)
            elif msg is not None and msg.error().code() != KafkaError._PARTITION_EOF:
                pytest.fail(f"consume failed: {msg.error()}")
    finally:
        consumer.close()
    return out


def test_plain_consumer_reads_binary_mode_cloudevents(kafka_log: KafkaEventLog, kafka_bootstrap: str,
                                                      topic: str) -> None:
    kafka_log.create_stream(topic, 3)
    events = [
        Event(type="order.created", data=b'{"n":1}', id="e-1", source="/shop", key="order-1",
              time="2024-05-01T12:00:00.000Z", subject="orders/1", headers={"trace": "t-1"}),
        Event(type="blob.stored", data=b"\x00\x01raw", id="e-2", source="/store", key="blob-9",
              datacontenttype="application/octet-stream"),
    ]
    positions = kafka_log.append(topic, events)
    for event, pos in zip(events, positions, strict=True):
        assert pos.partition == partition_for_key(event.key_bytes() or b"", 3)
        msg = consume_partition(kafka_bootstrap, topic, pos.partition, pos.offset + 1)[pos.offset]
        headers = dict(msg.headers() or [])
        assert msg.value() == event.data
        assert msg.key() == event.key_bytes()
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_id"] == event.id.encode()
        assert headers["ce_type"] == event.type.encode()
        assert headers["ce_source"] == event.source.encode()
        assert headers["content-type"] == event.datacontenttype.encode()
        if event.id == "e-1":
            assert headers["ce_time"] == b"2024-05-01T12:00:00.000Z"
            assert headers["ce_subject"] == b"orders/1"
            assert headers["trace"] == b"t-1"


def test_records_from_a_plain_producer_read_back_as_events(kafka_log: KafkaEventLog, kafka_bootstrap: str,
                                                           topic: str) -> None:
    kafka_log.create_stream(topic, 1)
    ce_headers = [("ce_specversion", b"1.0"), ("ce_id", b"abc-1"), ("ce_type", b"invoice.paid"),
                  ("ce_source", b"/billing"), ("content-type", b"application/json"), ("x-tenant", b"acme")]
    produce_all(plain_producer(kafka_bootstrap), topic, [
        {"value": b'{"amount": 5}', "key": b"inv-1", "headers": ce_headers, "partition": 0},
        {"value": b'{"plain": true}', "key": b"k-2", "partition": 0},
        {"value": b"\xff\xfenot json", "partition": 0},
    ])
    with_ce, plain_json, plain_bytes = kafka_log.read(topic, 0, from_offset=0, limit=10)

    assert (with_ce.event.id, with_ce.event.type, with_ce.event.source) == ("abc-1", "invoice.paid", "/billing")
    assert with_ce.event.data == b'{"amount": 5}' and with_ce.event.key == "inv-1"
    assert with_ce.event.headers == {"x-tenant": "acme"}

    assert plain_json.event.id == f"{topic}-0-1"  # stable across reads: topic-partition-offset
    assert plain_json.event.type == "kafka.record"
    assert plain_json.event.source == f"kafka://{topic}"
    assert plain_json.event.datacontenttype == "application/json"
    assert plain_json.event.key == "k-2" and plain_json.event.time is not None

    assert plain_bytes.event.key is None
    assert plain_bytes.event.data == b"\xff\xfenot json"
    assert plain_bytes.event.datacontenttype == "application/octet-stream"
    assert [r.offset for r in (with_ce, plain_json, plain_bytes)] == [0, 1, 2]


def test_plain_producer_partitions_keys_like_partition_for_key(kafka_log: KafkaEventLog, kafka_bootstrap: str,
                                                               topic: str) -> None:
    # librdkafka's murmur2_random is Java's default partitioner: the same key, the same partition.
    kafka_log.create_stream(topic, 7)
    keys = [f"customer-{i}".encode() for i in range(40)] + [b"", b"\xf0\x9f\x98\x80 utf-8", b"x" * 300]
    delivered = produce_all(plain_producer(kafka_bootstrap), topic, [{"value": b"{}", "key": k} for k in keys])
    assert [m.partition() for m in delivered] == [partition_for_key(k, 7) for k in keys]
    ours = kafka_log.append(topic, [Event(type="t", data=b"{}", key=k.decode()) for k in keys])
    assert [p.partition for p in ours] == [m.partition() for m in delivered]


def test_group_offsets_are_shared_with_kafka_clients(kafka_log: KafkaEventLog, kafka_bootstrap: str,
                                                     topic: str) -> None:
    # Lag and resets act on Kafka's own committed offsets, so kafka-consumer-groups and the bus agree.
    kafka_log.create_stream(topic, 2)
    kafka_log.append(topic, [Event(type="t", data=b"{}", key=f"k{i}") for i in range(10)])
    group = f"{topic}-workers"
    plain = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        plain.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)  # no subscribe: no group join
        assert kafka_log.committed(group, topic) == {0: 1}
        kafka_log.commit(group, topic, {1: 2})
        seen = plain.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        assert [(tp.partition, tp.offset) for tp in seen] == [(0, 1), (1, 2)]
    finally:
        plain.close()
    assert (group, topic) in kafka_log.groups(topic)


def test_commit_read_skips_only_the_end_check(kafka_log: KafkaEventLog, topic: str) -> None:
    # The dispatcher commits offsets that follow records it has just read: no ListOffsets request is needed
    # to know they are within the partition, but partitions and signs are still checked.
    from app.bus.log.base import InvalidOffset, InvalidPartition

    kafka_log.create_stream(topic, 2)
    kafka_log.append(topic, [Event(type="t", data=b"{}", key=f"k{i}") for i in range(6)])
    group = f"{topic}-dispatch"
    read = {p: rs[-1].offset + 1 for p, rs in kafka_log.drain(topic, {0: 0, 1: 0}, 100, 0.5).items() if rs}
    kafka_log.commit_read(group, topic, read)
    assert kafka_log.committed(group, topic) == read
    with pytest.raises(InvalidPartition):
        kafka_log.commit_read(group, topic, {2: 0})
    with pytest.raises(InvalidOffset):
        kafka_log.commit_read(group, topic, {0: -1})
    # The checked commit looks at every partition's end in one request and still refuses one beyond it.
    with pytest.raises(InvalidOffset):
        kafka_log.commit(group, topic, {0: read.get(0, 0), 1: read.get(1, 0) + 1})
    assert kafka_log.committed(group, topic) == read
