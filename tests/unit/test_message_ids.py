"""Campaign message ids drawn in bulk: ascending UUIDs, and numeric ids like new_verification_id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from switchboard.services.messaging import new_message_ids, new_numeric_ids


def test_campaign_message_ids_are_ascending_unguessable_version_7_uuids() -> None:
    at = datetime(2026, 11, 25, 17, 45, 1, 234000, tzinfo=UTC)
    ids = new_message_ids(50_000, at)
    assert ids == sorted(ids)
    assert len(set(ids)) == 50_000
    for text in ids[:2000]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert parsed.int >> 80 == int(at.timestamp() * 1000)
    # the 56 random bits at the end: their leading hex digit takes every value
    assert {text[-14] for text in ids} == set("0123456789abcdef")
    assert new_message_ids(1, at) != new_message_ids(1, at)


def test_bulk_numeric_ids_are_18_digit_and_spread_over_the_range() -> None:
    ids = new_numeric_ids(5000)
    assert len(ids) == 5000
    assert len(set(ids)) == 5000
    assert all(10**17 <= value < 10**18 for value in ids)
    assert {str(value)[0] for value in ids} == set("123456789")
    assert new_numeric_ids(0) == []
    assert new_message_ids(0, datetime.now(UTC)) == []
