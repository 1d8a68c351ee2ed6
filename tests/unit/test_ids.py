"""New ids (events, rows): version 7 UUID strings, sorting in the order they were made (right-edge B-tree inserts)."""
from __future__ import annotations

import uuid

from app.bus.ids import new_id


def test_new_ids_are_version_7_uuid_strings() -> None:
    value = new_id()
    parsed = uuid.UUID(value)
    assert str(parsed) == value  # the canonical lower-case hyphenated form API.md promises
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_new_ids_sort_in_the_order_they_were_made() -> None:
    made = [new_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert made == sorted(made)  # within one millisecond too: random version 4 ids would not be
