"""Per-key ordering for a fetched batch: which deliveries may run concurrently and which must wait.

The dispatcher runs the lanes concurrently and the items of one lane sequentially, in order. When an
item of a lane fails (goes to retry), the rest of that lane must be held behind it (see
``split_after_failure``) and, for an ordered subscription, its key is blocked: later batches pass the
key in ``blocked_keys`` so that nothing overtakes the failed event until it succeeds or dead-letters.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def plan_lanes(
    items: Sequence[T], key_of: Callable[[T], str | None], ordered: bool, blocked_keys: set[str]
) -> tuple[list[list[T]], list[T]]:
    """Split a batch into (lanes, held): one lane per key when ordered (keyless items alone), else one per item."""
    if not ordered:
        return [[item] for item in items], []
    lanes: list[list[T]] = []
    by_key: dict[str, list[T]] = {}
    held: list[T] = []
    for item in items:
        key = key_of(item)
        if key is None:
            # No key, no ordering promise: the item can go alongside anything.
            lanes.append([item])
        elif key in blocked_keys:
            held.append(item)
        else:
            lane = by_key.get(key)
            if lane is None:
                lane = by_key[key] = []
                lanes.append(lane)
            lane.append(item)
    return lanes, held


def split_after_failure(lane: Sequence[T], index: int) -> list[T]:
    """The items of a lane to hold after the item at ``index`` failed: everything behind it, in order."""
    if not 0 <= index < len(lane):
        raise IndexError(f"index {index} is outside a lane of {len(lane)} items")
    return list(lane[index + 1 :])
