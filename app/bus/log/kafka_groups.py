"""Consumer groups of the Kafka event log: REST pull semantics on Kafka's committed offsets, without joining."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from app.bus.envelope import Record
from app.bus.log.base import InvalidOffset, InvalidPartition, LogError, PartitionLag, ResetTarget
from app.bus.log.kafka_admin import kafka_error, raise_for

if TYPE_CHECKING:
    from app.bus.log.kafka import KafkaEventLog

logger = logging.getLogger(__name__)

# Groups the log itself uses to read; they never commit, but never list them either.
_INTERNAL_PREFIX = "_apg_"
# Kafka refuses to move the offsets of a group whose members are connected.
_ACTIVE_GROUP = (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS,
                 KafkaError.GROUP_SUBSCRIBED_TO_TOPIC)


class KafkaGroups:
    """Committed offsets live in Kafka's group coordinator, so every Kafka tool sees the same lag.

    Nothing here joins the group: a REST consumer fetches from the committed offsets and commits
    explicitly (AdminClient.alter_consumer_group_offsets), so fetching twice without a commit
    returns the same events. Kafka accepts such commits only while no member of the group is
    connected, which holds for groups used through this API.
    """

    def __init__(self, log: KafkaEventLog) -> None:
        self._log = log

    def fetch(
        self, group: str, stream: str, max_records: int, wait_s: float, partitions: Sequence[int] | None
    ) -> list[Record]:
        """Events after the committed offsets (earliest where none), fairly spread over partitions."""
        count = self._log.partitions(stream)
        parts = self._check_parts(stream, count, partitions)
        if max_records <= 0 or not parts:
            return []
        committed = self.committed(group, stream)
        lows = self._log.lows(stream, parts)
        starts = {p: max(committed.get(p, lows[p]), lows[p]) for p in parts}
        taken: dict[int, list[Record]] = {p: [] for p in parts}
        budget, active, wait = max_records, list(parts), wait_s
        # Rounds of an equal share per partition; partitions that filled their share get the unused
        # budget in the next round. Bounded memory, fair, and the same answer for the same log.
        while budget > 0 and active:
            share = -(-budget // len(active))
            got = self._log.drain(stream, {p: starts[p] for p in active}, share * len(active),
                                  wait_s=wait, per_partition_limit=share)
            # A long poll returns soon after its first record (kafka_reader.LINGER_S), maybe before another
            # partition's records arrived: every partition short of its share gets the next round, which
            # does not wait and so reads each to its end.
            lingered, wait = wait > 0, 0.0
            if not any(got.values()):
                break
            still = []
            for p in active:
                taken[p].extend(got[p])
                budget -= len(got[p])
                if got[p]:
                    starts[p] = got[p][-1].offset + 1
                if len(got[p]) >= share or lingered:
                    still.append(p)
            active = still
        return _round_robin(taken, max_records)

    def commit(self, group: str, stream: str, offsets: Mapping[int, int], verify_ends: bool = True) -> None:
        """Store next offsets to read; InvalidPartition / InvalidOffset for ones outside the stream.

        ``verify_ends=False``: the caller read the records these offsets follow (see ``commit_read``).
        """
        count = self._log.partitions(stream)
        self._check_parts(stream, count, list(offsets))
        if not offsets:
            return
        if verify_ends:
            self._log.check_offsets(stream, offsets)
        elif min(offsets.values()) < 0:
            raise InvalidOffset(f"negative offset in {dict(offsets)}")
        self._alter(group, stream, dict(offsets))

    def committed(self, group: str, stream: str) -> dict[int, int]:
        """Committed offsets by partition; partitions never committed are absent."""
        count = self._log.partitions(stream)
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(stream, p) for p in range(count)])
        future = self._log.admin.client.list_consumer_group_offsets([request])[group]
        try:
            result = future.result()
        except KafkaException as exc:
            raise_for(exc, stream, f"committed offsets of {group} in")
        return {tp.partition: tp.offset for tp in result.topic_partitions or () if tp.offset >= 0 and not tp.error}

    def lag(self, group: str, stream: str) -> list[PartitionLag]:
        """End minus committed per partition (minus the low watermark before the first commit)."""
        parts = range(self._log.partitions(stream, fresh=True))
        committed = self.committed(group, stream)
        lows = self._log.lows(stream, parts)
        ends = self._log.ends(stream, parts, lows)
        out = []
        for p in parts:
            position = committed.get(p)
            lag = ends[p] - max(position if position is not None else lows[p], lows[p])
            out.append(PartitionLag(partition=p, committed=position, end=ends[p], lag=max(lag, 0)))
        return out

    def reset(self, group: str, stream: str, to: ResetTarget) -> dict[int, int]:
        """Move offsets to earliest, latest, a time or explicit offsets; return the new ones."""
        parts = range(self._log.partitions(stream, fresh=True))
        if to == "earliest":
            target = self._log.lows(stream, parts)
        elif to == "latest":
            target = self._log.ends(stream, parts)
        elif isinstance(to, Mapping) and "time" in to:
            time_ms = to["time"]
            if not isinstance(time_ms, int) or isinstance(time_ms, bool):
                raise ValueError("reset time must be milliseconds since the epoch")
            target = self._log.offsets_for_time(stream, {p: time_ms for p in parts})
        elif isinstance(to, Mapping) and "offsets" in to:
            raw = to["offsets"]
            if not isinstance(raw, Mapping):
                raise ValueError("reset offsets must map partition to offset")
            target = {int(p): int(o) for p, o in raw.items()}
            self._check_parts(stream, len(parts), list(target))
            self._log.check_offsets(stream, target)
        else:
            raise ValueError("reset to 'earliest', 'latest', {'time': ms} or {'offsets': {partition: offset}}")
        if target:
            self._alter(group, stream, target)
        return dict(sorted(target.items()))

    def groups(self, stream: str | None = None) -> list[tuple[str, str]]:
        """(group, stream) pairs that have committed offsets, optionally only for one stream."""
        client = self._log.admin.client
        try:
            listing = client.list_consumer_groups(request_timeout=self._log.admin.timeout_s).result()
        except KafkaException as exc:
            raise LogError(f"list consumer groups: {exc}") from exc
        names = sorted(g.group_id for g in listing.valid if not g.group_id.startswith(_INTERNAL_PREFIX))
        # One request per group (librdkafka's limit), sent all at once and gathered.
        futures = {
            name: client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(name)])[name] for name in names
        }
        pairs: set[tuple[str, str]] = set()
        for name, future in futures.items():
            try:
                result = future.result()
            except KafkaException as exc:
                logger.warning("listing offsets of group %s failed: %s", name, exc)
                continue
            for tp in result.topic_partitions or ():
                if tp.offset >= 0 and (stream is None or tp.topic == stream):
                    pairs.add((name, tp.topic))
        return sorted(pairs)

    def delete(self, group: str, stream: str) -> None:
        """Delete the group when its offsets are on ``stream`` only; a group reading other topics too is kept."""
        client = self._log.admin.client
        try:
            offsets = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
        except KafkaException as exc:
            if _unknown_group(exc):
                return
            raise LogError(f"list offsets of group {group}: {exc}") from exc
        topics = {tp.topic for tp in offsets.topic_partitions or () if tp.offset >= 0}
        if not topics:
            return
        if topics != {stream}:
            # Kafka deletes whole groups; offsets of one topic (OffsetDelete) are not in the client's API.
            logger.warning("group %s also reads %s: not deleted", group, sorted(topics - {stream}))
            return
        try:
            client.delete_consumer_groups([group], request_timeout=self._log.admin.timeout_s)[group].result()
        except KafkaException as exc:
            if _unknown_group(exc):
                return
            raise LogError(f"delete group {group}: {exc}") from exc
        logger.info("deleted group %s on %s", group, stream)

    # -- internals ----------------------------------------------------------------------------
    def _alter(self, group: str, stream: str, offsets: Mapping[int, int]) -> None:
        tps = [TopicPartition(stream, p, o) for p, o in sorted(offsets.items())]
        request = ConsumerGroupTopicPartitions(group, tps)
        future = self._log.admin.client.alter_consumer_group_offsets([request])[group]
        try:
            result = future.result()
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and err.code() in _ACTIVE_GROUP:
                raise LogError(f"group {group} has connected members; stop them before moving its offsets") from exc
            raise_for(exc, stream, f"commit offsets of {group} in")
        for tp in result.topic_partitions or ():
            if tp.error:
                raise LogError(f"commit offsets of {group} in {stream}[{tp.partition}]: {tp.error.str()}")

    @staticmethod
    def _check_parts(stream: str, count: int, partitions: Sequence[int] | None) -> list[int]:
        if partitions is None:
            return list(range(count))
        for p in partitions:
            if not isinstance(p, int) or not 0 <= p < count:
                raise InvalidPartition(f"{stream} has partitions 0..{count - 1}, not {p}")
        return sorted(set(partitions))


def _round_robin(per_partition: Mapping[int, list[Record]], limit: int) -> list[Record]:
    """Take records from the partitions in turn, so a busy partition cannot starve the others.

    Deterministic for the same log contents, which is what makes a repeated fetch without a commit
    return the same events.
    """
    queues = [per_partition[p] for p in sorted(per_partition) if per_partition[p]]
    out: list[Record] = []
    depth = 0
    while len(out) < limit and queues:
        queues = [q for q in queues if depth < len(q)]
        for q in queues:
            if len(out) >= limit:
                break
            out.append(q[depth])
        depth += 1
    return out


def _unknown_group(exc: KafkaException) -> bool:
    """True when the broker does not know the group (nothing to delete)."""
    err = kafka_error(exc)
    return err is not None and err.code() == KafkaError.GROUP_ID_NOT_FOUND
