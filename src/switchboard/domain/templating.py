"""Message templates: ##varN## substitution for bulk sends and India DLT template matching."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from switchboard.errors import InvalidRequestError

# `##var##` is the spec's own spelling of var1 ("Hello ##var##, your balance is ##var2##").
# Four digits at most: a longer run is left as text instead of becoming a huge integer.
_PLACEHOLDER: Final = re.compile(r"##var([1-9][0-9]{0,3})?##", re.IGNORECASE)


def placeholders(template: str) -> set[int]:
    """The variable numbers a template uses: `##var##` and `##var1##` are both 1."""
    return {int(match.group(1) or 1) for match in _PLACEHOLDER.finditer(template)}


def render(template: str, variables: Sequence[str]) -> str:
    """Substitute `##varN##` with `variables[N - 1]`, in one pass.

    A value is never re-scanned, so a recipient's value that contains `##var2##` stays text.
    A placeholder whose value is absent, empty or only whitespace raises InvalidRequestError
    naming it: a message with a hole in it is not worth paying for.
    """
    texts, numbers = _split(template)
    values: list[str] = []
    for number in numbers:
        value = variables[number - 1] if number <= len(variables) else ""
        if not value.strip():
            raise InvalidRequestError(
                f"the message uses ##var{number}## but var{number} has no value"
            )
        values.append(value)
    if not numbers:
        return template
    parts = [texts[0]]
    for value, text in zip(values, texts[1:], strict=True):
        parts += (value, text)
    return "".join(parts)


@lru_cache(maxsize=256)
def _split(template: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The template's literal texts around its placeholders, and their variable numbers:
    a campaign renders one template a million times."""
    texts: list[str] = []
    numbers: list[int] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        texts.append(template[position : match.start()])
        numbers.append(int(match.group(1) or 1))
        position = match.end()
    texts.append(template[position:])
    return tuple(texts), tuple(numbers)


# DLT variable tags as operator portals spell them; any other `{#…#}` is literal text there.
_DLT_TAG: Final = re.compile(r"\{#(var|numeric|alphanumeric|url|urlott|cbn|email)#\}")
_DLT_CHARACTERS: Final[dict[str, str]] = {
    "var": r"[\s\S]",
    "numeric": r"[0-9]",
    "alphanumeric": r"[A-Za-z0-9 ]",
    "url": r"\S",
    "urlott": r"\S",
    "cbn": r"[0-9+\-]",
    "email": r"\S",
}
_SLOT_CHARACTER: Final = {
    kind: re.compile(characters).fullmatch for kind, characters in _DLT_CHARACTERS.items()
}
DLT_MAX_VARIABLE_CHARS: Final = 30


@dataclass(frozen=True)
class DltSlot:
    """One `{#kind#}` of a DLT template: up to `max_chars` characters of its class."""

    kind: str
    max_chars: int

    @property
    def min_chars(self) -> int:
        # `{#var#}` may be sent empty; a typed variable must carry a value of its type.
        return 0 if self.kind == "var" else 1


@dataclass(frozen=True)
class DltTemplate:
    """A registered DLT content template, compiled.

    `pattern` is the anchored regular expression the operator's scrubber applies. `matches`
    answers the same question without backtracking, because a template such as
    `{#var#} {#var#} {#var#} …` makes a backtracking regex exponential on a near miss.
    """

    text: str
    parts: tuple[str | DltSlot, ...]
    pattern: re.Pattern[str]

    def matches(self, message: str) -> bool:
        """Whether `message` is this template with each variable filled, byte for byte."""
        ends = {0}
        for part in self.parts:
            if isinstance(part, str):
                ends = {end + len(part) for end in ends if message.startswith(part, end)}
            else:
                ends = _slot_ends(part, message, ends)
            if not ends:
                return False
        return len(message) in ends


def _slot_ends(slot: DltSlot, message: str, starts: set[int]) -> set[int]:
    allowed = _SLOT_CHARACTER[slot.kind]
    ends: set[int] = set()
    for start in starts:
        if slot.min_chars == 0:
            ends.add(start)
        end = start
        while end < len(message) and end - start < slot.max_chars and allowed(message[end]):
            end += 1
            ends.add(end)
    return ends


def compile_dlt_template(
    text: str, *, max_variable_chars: int = DLT_MAX_VARIABLE_CHARS
) -> DltTemplate:
    """Compile a registered DLT template; whitespace and punctuation are kept exactly."""
    parts: list[str | DltSlot] = []
    regex = ["^"]
    position = 0
    for tag in _DLT_TAG.finditer(text):
        if tag.start() > position:
            parts.append(text[position : tag.start()])
            regex.append(re.escape(text[position : tag.start()]))
        slot = DltSlot(kind=tag.group(1), max_chars=max_variable_chars)
        parts.append(slot)
        regex.append(f"{_DLT_CHARACTERS[slot.kind]}{{{slot.min_chars},{slot.max_chars}}}")
        position = tag.end()
    if position < len(text):
        parts.append(text[position:])
        regex.append(re.escape(text[position:]))
    regex.append(r"\Z")
    return DltTemplate(text=text, parts=tuple(parts), pattern=re.compile("".join(regex)))


@lru_cache(maxsize=1024)
def _compiled(text: str) -> DltTemplate:
    return compile_dlt_template(text)


def matches(template_text: str, message: str) -> bool:
    """Whether `message` fits the registered DLT template `template_text`."""
    return _compiled(template_text).matches(message)
