"""Lane planning for per-key ordering."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bus.delivery.ordering import plan_lanes, split_after_failure

Item = tuple[int, str | None]


def key_of(item: Item) -> str | None:
    return item[1]


def test_unordered_one_lane_per_item() -> None:
    items = [(0, "a"), (1, "a"), (2, None)]
    lanes, held = plan_lanes(items, key_of, ordered=False, blocked_keys={"a"})
    assert lanes == [[(0, "a")], [(1, "a")], [(2, None)]]
    assert held == []


def test_ordered_groups_by_key_and_holds_blocked() -> None:
    items = [(0, "a"), (1, "b"), (2, None), (3, "a"), (4, "c"), (5, None), (6, "c"), (7, "b")]
    lanes, held = plan_lanes(items, key_of, ordered=True, blocked_keys={"c"})
    assert lanes == [[(0, "a"), (3, "a")], [(1, "b"), (7, "b")], [(2, None)], [(5, None)]]
    assert held == [(4, "c"), (6, "c")]


def test_empty_batch() -> None:
    assert plan_lanes([], key_of, ordered=True, blocked_keys=set()) == ([], [])


def test_split_after_failure() -> None:
    lane = ["a", "b", "c", "d"]
    assert split_after_failure(lane, 1) == ["c", "d"]
    assert split_after_failure(lane, 3) == []
    assert split_after_failure(lane, 0) == ["b", "c", "d"]


items_strategy = st.lists(st.one_of(st.none(), st.sampled_from("abcde")), max_size=60).map(
    lambda keys: [(i, k) for i, k in enumerate(keys)]
)


# A loaded machine (CI, other test runs) can make input generation slow; that says nothing about plan_lanes.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=items_strategy, ordered=st.booleans(), blocked=st.sets(st.sampled_from("abcdef")))
def test_plan_lanes_properties(items: list[Item], ordered: bool, blocked: set[str]) -> None:
    lanes, held = plan_lanes(items, key_of, ordered, blocked)
    placed = [item for lane in lanes for item in lane] + held
    # Every item exactly once.
    assert sorted(placed) == items
    assert all(lane for lane in lanes)
    # Input order inside every lane and in held.
    for lane in [*lanes, held]:
        assert [i for i, _ in lane] == sorted(i for i, _ in lane)
    if not ordered:
        assert held == [] and all(len(lane) == 1 for lane in lanes)
        return
    assert held == [item for item in items if item[1] in blocked]
    seen_keys: set[str] = set()
    for lane in lanes:
        keys = {k for _, k in lane}
        assert len(keys) == 1
        (key,) = keys
        if key is None:
            assert len(lane) == 1
        else:
            # One lane per key, holding all of that key's unblocked items.
            assert key not in blocked and key not in seen_keys
            seen_keys.add(key)
            assert lane == [item for item in items if item[1] == key]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lane=st.lists(st.integers(), min_size=1, max_size=20), data=st.data())
def test_split_after_failure_property(lane: list[int], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(lane) - 1))
    rest = split_after_failure(lane, index)
    assert lane[: index + 1] + rest == lane
