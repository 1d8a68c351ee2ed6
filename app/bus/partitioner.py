"""Kafka's default partitioner (murmur2), so a key lands in the same partition on every backend."""
from __future__ import annotations

import functools
import itertools
import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Return Kafka's murmur2 hash of ``data`` as a signed 32-bit int (as Java computes it)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length >> 2
    if n4:
        # All little-endian 32-bit words at once: much cheaper than indexing bytes one by one.
        for k in struct.unpack_from(f"<{n4}I", data):
            k = (k * _M) & _MASK
            k ^= k >> 24
            h = ((h * _M) ^ (k * _M)) & _MASK
    rest = length & 3
    if rest:
        # Fall-through switch of the Java original.
        tail = length - rest
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


# Keys repeat (customer ids, order ids): a bounded cache spares the hash on the append hot path.
_cached_murmur2 = functools.lru_cache(maxsize=8192)(murmur2)


def partition_for_key(key: bytes, partitions: int) -> int:
    """Partition of a keyed record: ``toPositive(murmur2(key)) % partitions``, like Kafka."""
    if partitions < 1:
        raise ValueError("a stream has at least one partition")
    return (_cached_murmur2(key if type(key) is bytes else bytes(key)) & 0x7FFFFFFF) % partitions


class RoundRobin:
    """Spreads keyless records over partitions; thread-safe enough (itertools.count is atomic in CPython)."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def next(self, partitions: int) -> int:
        """The partition for the next keyless record."""
        return next(self._counter) % partitions
