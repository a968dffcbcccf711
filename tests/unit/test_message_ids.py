"""Campaign message ids drawn in bulk look and spread like uuid4 and new_verification_id."""

from __future__ import annotations

import uuid

from switchboard.services.messaging import new_message_ids, new_numeric_ids


def test_bulk_message_ids_are_random_version_4_uuids() -> None:
    ids = new_message_ids(5000)
    assert len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # every hex digit that is random takes all 16 values somewhere in 5,000 ids
    assert {text[0] for text in ids} == set("0123456789abcdef")
    assert {text[19] for text in ids} == set("89ab")


def test_bulk_numeric_ids_are_18_digit_and_spread_over_the_range() -> None:
    ids = new_numeric_ids(5000)
    assert len(ids) == 5000
    assert len(set(ids)) == 5000
    assert all(10**17 <= value < 10**18 for value in ids)
    assert {str(value)[0] for value in ids} == set("123456789")
    assert new_numeric_ids(0) == []
    assert new_message_ids(0) == []
