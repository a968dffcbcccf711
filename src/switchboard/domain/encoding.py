"""SMS text encodings: GSM-7 / UCS-2 detection, segment counting, splitting and encoding."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Encoding(StrEnum):
    GSM7 = "GSM7"  # 3GPP TS 23.038 default alphabet; SMPP data_coding 0x00, one septet per octet
    UCS2 = "UCS2"  # UTF-16BE code units; SMPP data_coding 0x08


# TS 23.038 §6.2.1, index = septet value; 0x1B is the escape to the extension table.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM7_ESCAPE = 0x1B
# TS 23.038 §6.2.1.1: each costs two septets (ESC + code) and must never be split across parts.
GSM7_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

_BASIC_CODES = {char: code for code, char in enumerate(GSM7_BASIC) if code != GSM7_ESCAPE}
_EXTENSION_CHARS = {code: char for char, code in GSM7_EXTENSION.items()}

# The fast paths: deleting every basic character leaves the ones that cost more than a septet.
_WITHOUT_BASIC = str.maketrans(dict.fromkeys(_BASIC_CODES))

# Units per message: (single part, each part of a concatenated message with an 8-bit UDH ref).
SINGLE_PART_UNITS = {Encoding.GSM7: 160, Encoding.UCS2: 70}
MULTI_PART_UNITS = {Encoding.GSM7: 153, Encoding.UCS2: 67}


@dataclass(frozen=True, slots=True)
class TextInfo:
    """How a text travels: its encoding, its size in units (septets or UTF-16 units), its parts."""

    encoding: Encoding
    units: int
    segments: int


def is_gsm7(text: str) -> bool:
    return _gsm7_units(text) is not None


def _gsm7_units(text: str) -> int | None:
    """Septets of `text`, None when a character is outside the GSM-7 alphabet."""
    rest = text.translate(_WITHOUT_BASIC)
    if not rest:
        return len(text)
    if all(char in GSM7_EXTENSION for char in rest):
        return len(text) + len(rest)  # ESC + code: one more septet each
    return None


def _ucs2_units(text: str) -> int:
    """UTF-16 code units: two for a character beyond the BMP, one for any other."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def detect_encoding(text: str) -> Encoding:
    return Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2


def unit_cost(char: str, encoding: Encoding) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) that one character takes."""
    if encoding is Encoding.GSM7:
        if char in GSM7_EXTENSION:
            return 2
        if char in _BASIC_CODES:
            return 1
        raise ValueError(f"character {char!r} is not in the GSM-7 alphabet")
    return 2 if ord(char) > 0xFFFF else 1


def count_units(text: str, encoding: Encoding) -> int:
    """The sum of `unit_cost` over the text's characters; raises as it does."""
    if encoding is Encoding.UCS2:
        return _ucs2_units(text)
    units = _gsm7_units(text)
    if units is None:
        return sum(unit_cost(char, encoding) for char in text)  # raises for the first outsider
    return units


def analyse(text: str, encoding: Encoding | None = None) -> TextInfo:
    """Encoding, size and number of parts, counted the way the recipient is billed.

    An empty text is one (empty) part. `encoding` forces UCS-2 for a GSM-7 text; forcing GSM-7
    on a text outside the alphabet raises ValueError.
    """
    if encoding is None:
        gsm7 = _gsm7_units(text)
        chosen = Encoding.UCS2 if gsm7 is None else Encoding.GSM7
        units = _ucs2_units(text) if gsm7 is None else gsm7
    else:
        chosen, units = encoding, count_units(text, encoding)
    if units <= SINGLE_PART_UNITS[chosen]:
        return TextInfo(chosen, units, 1)
    per_part = MULTI_PART_UNITS[chosen]
    if units == len(text):  # every character costs one unit: parts fill up evenly
        return TextInfo(chosen, units, -(-units // per_part))
    return TextInfo(chosen, units, len(split(text, chosen, per_part)))


def split(text: str, encoding: Encoding, per_part_units: int) -> tuple[str, ...]:
    """Cut a text into parts of at most `per_part_units` units each.

    A GSM-7 extension character (ESC + code) and a UTF-16 surrogate pair are one Python
    character each, so cutting between characters never separates them.
    """
    if per_part_units < 2:
        raise ValueError("a part must hold at least 2 units (one escape or surrogate pair)")
    parts: list[str] = []
    start = 0
    used = 0
    for index, char in enumerate(text):
        cost = unit_cost(char, encoding)
        if used + cost > per_part_units:
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    return tuple(parts)


def split_for_sms(text: str, encoding: Encoding | None = None) -> tuple[TextInfo, tuple[str, ...]]:
    """The text's info and its parts: one part if it fits a single SMS, else concatenated parts."""
    info = analyse(text, encoding)
    if info.segments == 1:
        return info, (text,)
    return info, split(text, info.encoding, MULTI_PART_UNITS[info.encoding])


def encode(text: str, encoding: Encoding) -> bytes:
    """GSM-7 unpacked (one septet per octet, as SMPP data_coding 0x00 wants) or UTF-16BE."""
    if encoding is Encoding.UCS2:
        return text.encode("utf-16-be")
    out = bytearray()
    for char in text:
        code = _BASIC_CODES.get(char)
        if code is not None:
            out.append(code)
            continue
        extension = GSM7_EXTENSION.get(char)
        if extension is None:
            raise ValueError(f"character {char!r} is not in the GSM-7 alphabet")
        out += bytes((GSM7_ESCAPE, extension))
    return bytes(out)


def decode_gsm7(data: bytes) -> str:
    """Unpacked GSM-7 to text; never fails (unknown escapes become the base character, per spec)."""
    chars: list[str] = []
    escaped = False
    for octet in data:
        septet = octet & 0x7F
        if escaped:
            escaped = False
            # TS 23.038: an unknown extension code is shown as the basic-table character.
            chars.append(_EXTENSION_CHARS.get(septet, GSM7_BASIC[septet]))
        elif septet == GSM7_ESCAPE:
            escaped = True
        else:
            chars.append(GSM7_BASIC[septet])
    if escaped:
        chars.append(" ")
    return "".join(chars)


def decode_ucs2(data: bytes) -> str:
    """UTF-16BE to text; a stray odd byte or lone surrogate becomes U+FFFD instead of failing."""
    return data.decode("utf-16-be", errors="replace")
