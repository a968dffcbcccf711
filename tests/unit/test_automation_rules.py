"""Automation templates ({{dotted.path}}, nothing evaluated) and quiet hours in local time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchboard.automations.rules import after_quiet_hours, check_quiet_hours
from switchboard.automations.templates import render, variables


def test_dotted_paths_render_from_nested_fields_and_list_indexes() -> None:
    context = {
        "order": {"name": "#1001", "total": 499.5, "items": [{"title": "Tea"}]},
        "customer": {"first_name": "Asha"},
        "tracking_url": "https://t.example/1",
    }
    rendered = render(
        "{{ customer.first_name }}: {{order.name}} ({{order.items.0.title}}, "
        "{{order.total}}) {{tracking_url}}",
        context,
    )
    assert rendered.text == "Asha: #1001 (Tea, 499.5) https://t.example/1"
    assert rendered.missing == ()


def test_missing_null_boolean_and_non_scalar_values_render_empty_and_are_reported() -> None:
    context = {"a": None, "b": True, "c": {"d": 1}, "e": [1, 2]}
    rendered = render("[{{a}}][{{b}}][{{c}}][{{e}}][{{e.5}}][{{x.y}}][{{x.y}}]", context)
    assert rendered.text == "[][][][][][][]"
    assert rendered.missing == ("a", "b", "c", "e", "e.5", "x.y")


def test_templates_are_data_expressions_and_attributes_are_never_evaluated() -> None:
    context = {"order": {"name": "#1"}}
    template = "{{ order.__class__ }} {{ 1 + 1 }} {{order.name|upper}} {% if x %}"
    rendered = render(template, context)
    # only plain dotted names are placeholders; the rest stays as written
    assert rendered.text == " {{ 1 + 1 }} {{order.name|upper}} {% if x %}"
    assert rendered.missing == ("order.__class__",)
    assert variables("{{a.b}} {{c}} {{a.b}}") == ["a.b", "c"]


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        # Kolkata is UTC+5:30; quiet 21:00-09:00 local = 15:30-03:30 UTC
        (datetime(2026, 12, 2, 10, 0, tzinfo=UTC), datetime(2026, 12, 2, 10, 0, tzinfo=UTC)),
        (datetime(2026, 12, 2, 16, 0, tzinfo=UTC), datetime(2026, 12, 3, 3, 30, tzinfo=UTC)),
        (datetime(2026, 12, 2, 1, 0, tzinfo=UTC), datetime(2026, 12, 2, 3, 30, tzinfo=UTC)),
        (datetime(2026, 12, 2, 3, 30, tzinfo=UTC), datetime(2026, 12, 2, 3, 30, tzinfo=UTC)),
        (datetime(2026, 12, 2, 15, 30, tzinfo=UTC), datetime(2026, 12, 3, 3, 30, tzinfo=UTC)),
    ],
)
def test_a_send_inside_quiet_hours_moves_to_their_local_end(
    utc: datetime, expected: datetime
) -> None:
    assert after_quiet_hours(utc, "21:00-09:00", "Asia/Kolkata") == expected


def test_quiet_hours_within_one_day_and_none() -> None:
    noon = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert after_quiet_hours(noon, "12:00-14:00", "UTC") == noon.replace(hour=14)
    assert after_quiet_hours(noon, None, "UTC") == noon


@pytest.mark.parametrize("bad", ["9-5", "21:00", "25:00-09:00", "09:00-09:00", "21:00-09:60"])
def test_malformed_quiet_hours_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="quiet hours"):
        check_quiet_hours(bad)
