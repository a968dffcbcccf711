"""Message templates: `{{dotted.path}}` substituted from an event's fields, nothing evaluated."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

_PLACEHOLDER: Final = re.compile(r"\{\{\s*([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)\s*\}\}")


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    missing: tuple[str, ...]  # variables with no (scalar) value; they rendered empty


def variables(template: str) -> list[str]:
    """The variables a template uses, in order of first use."""
    return list(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template)))


def _lookup(context: Mapping[str, Any], path: str) -> str | None:
    value: Any = context
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, Sequence) and not isinstance(value, str) and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else None
        else:
            return None
    if value is None or isinstance(value, bool):
        # a bool would print as Python's "True"; no customer wants that in a text
        return None
    if isinstance(value, str | int | float | Decimal):
        return str(value)
    return None  # a mapping or a list: not something to print


def render(template: str, context: Mapping[str, Any]) -> Rendered:
    """Substitute every `{{path}}`; a missing or non-scalar value renders empty and is listed."""
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        value = _lookup(context, match.group(1))
        if value is None:
            missing.append(match.group(1))
            return ""
        return value

    text = _PLACEHOLDER.sub(substitute, template)
    return Rendered(text=text, missing=tuple(dict.fromkeys(missing)))
