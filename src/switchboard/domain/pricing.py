"""Prices: money as integer minor units, rules by channel, prefix, message type and monthly volume.

A rule prices one billable unit: an SMS segment, or one message on the other channels. Among
the rules that match a send, a customer's own rules beat the platform's, then the longest
destination prefix wins, then an exact message type beats `*`, then the highest volume tier
the month has reached.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from switchboard.domain.messages import Channel, MessageType
from switchboard.errors import InvalidRequestError

ANY = "*"
MAX_PREFIX_DIGITS = 15  # E.164
MAX_TABLE_ERRORS = 20
CSV_COLUMNS = ("channel", "prefix", "message_type", "price")
OPTIONAL_COLUMNS = ("min_volume",)


@dataclass(frozen=True, slots=True)
class Currency:
    """The platform currency; amounts are integers of 10^-minor_units of it."""

    code: str
    minor_units: int

    def to_minor(self, value: str | Decimal, *, allow_negative: bool = False) -> int:
        """'0.0075' → 75 with 4 minor units. Raises ValueError for a malformed amount, one with
        more decimals than the ledger keeps (never rounded), or a negative one unless allowed."""
        try:
            amount = Decimal(value.strip()) if isinstance(value, str) else value
        except InvalidOperation:
            raise ValueError(f"'{value}' is not a decimal amount") from None
        if not amount.is_finite():
            raise ValueError(f"'{value}' is not a decimal amount")
        if amount < 0 and not allow_negative:
            raise ValueError(f"'{value}' is negative")
        scaled = amount.scaleb(self.minor_units)
        if scaled != scaled.to_integral_value():
            raise ValueError(
                f"'{value}' has more than {self.minor_units} decimal places "
                f"(billing.minor_units = {self.minor_units})"
            )
        return int(scaled)

    def format(self, amount: int) -> str:
        """75 → '0.0075' with 4 minor units."""
        if self.minor_units == 0:
            return str(amount)
        sign = "-" if amount < 0 else ""
        whole, fraction = divmod(abs(amount), 10**self.minor_units)
        return f"{sign}{whole}.{fraction:0{self.minor_units}d}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceRule:
    """The price of one unit on `channel` to destinations starting with `prefix` ('' = any).

    `message_type` None applies to every type; `min_volume` > 0 makes the rule a volume tier
    that applies once the customer's month on this channel has reached that many units.
    `account_id` None is a platform default; otherwise the customer's own price.
    """

    channel: Channel
    prefix: str
    message_type: MessageType | None
    price: int
    min_volume: int = 0
    account_id: str | None = None

    @property
    def key(self) -> tuple[str | None, Channel, str, MessageType | None, int]:
        return (self.account_id, self.channel, self.prefix, self.message_type, self.min_volume)


@dataclass(frozen=True, slots=True, kw_only=True)
class Billable:
    """What a price is asked for: one message, its destination and its billable units."""

    channel: Channel
    message_type: MessageType
    destination: str
    units: int


def unit_name(channel: Channel) -> str:
    return "segment" if channel is Channel.SMS else "message"


def billable_units(channel: Channel, segments: int) -> int:
    """SMS is billed per segment, every other channel per message."""
    return max(1, segments) if channel is Channel.SMS else 1


def destination_digits(destination: str) -> str:
    """'+919876543210' → '919876543210'; an e-mail address has none (only `*` rules match)."""
    digits = destination.removeprefix("+")
    return digits if destination.startswith("+") and digits.isdigit() else ""


def period_of(moment: datetime) -> str:
    """The calendar month volumes are counted in, UTC: '2026-11'."""
    return moment.strftime("%Y-%m")


def prefixes_of(digits: str) -> list[str]:
    """Every prefix a rule may have to match `digits`, the empty one (any) included."""
    return [digits[:n] for n in range(min(len(digits), MAX_PREFIX_DIGITS) + 1)]


def choose_rule(
    rules: Iterable[PriceRule],
    *,
    account_id: str,
    channel: Channel,
    digits: str,
    message_type: MessageType,
    volume: int,
) -> PriceRule | None:
    """The rule that prices a send, or None when nothing matches (see the module docstring)."""
    best: PriceRule | None = None
    best_rank: tuple[bool, int, bool, int] | None = None
    for rule in rules:
        if (
            rule.channel is not channel
            or rule.account_id not in (None, account_id)
            or not digits.startswith(rule.prefix)
            or rule.message_type not in (None, message_type)
            or rule.min_volume > volume
        ):
            continue
        rank = (
            rule.account_id is not None,
            len(rule.prefix),
            rule.message_type is not None,
            rule.min_volume,
        )
        if best_rank is None or rank > best_rank:
            best, best_rank = rule, rank
    return best


def price_billables(
    rules: Collection[PriceRule],
    account_id: str,
    items: Iterable[Billable],
    volumes: Mapping[Channel, int],
    *,
    default_price: int | None = None,
    free_destinations: Collection[str] = (),
) -> list[int]:
    """The charge of each item, in order; each item's units count towards the next one's tier.

    `volumes` is the month's units per channel before these items. Destinations in
    `free_destinations` (sandbox test numbers) cost nothing. Raises InvalidRequestError when an
    item matches no rule and there is no `default_price`.
    """
    running = dict(volumes)
    charges = []
    for item in items:
        volume = running.get(item.channel, 0)
        running[item.channel] = volume + item.units
        if item.destination in free_destinations:
            charges.append(0)
            continue
        rule = choose_rule(
            rules,
            account_id=account_id,
            channel=item.channel,
            digits=destination_digits(item.destination),
            message_type=item.message_type,
            volume=volume,
        )
        if rule is not None:
            charges.append(rule.price * item.units)
        elif default_price is not None:
            charges.append(default_price * item.units)
        else:
            digits = destination_digits(item.destination)
            target = f"+{digits[:4]}…" if digits else "this destination"
            raise InvalidRequestError(
                f"no price is set for {item.channel.value} {item.message_type.value} messages "
                f"to {target}; ask the operator to add one"
            )
    return charges


def parse_rule(values: Mapping[str, str], currency: Currency, account_id: str | None) -> PriceRule:
    """One price table row (`channel,prefix,message_type,price[,min_volume]`); ValueError says
    what is wrong with it."""
    raw_channel = (values.get("channel") or "").strip().upper()
    try:
        channel = Channel(raw_channel)
    except ValueError:
        raise ValueError(
            f"channel '{raw_channel}' is not one of {', '.join(c.value for c in Channel)}"
        ) from None
    prefix = (values.get("prefix") or "").strip().removeprefix("+")
    if prefix == ANY:
        prefix = ""
    if prefix and (not prefix.isdigit() or len(prefix) > MAX_PREFIX_DIGITS):
        raise ValueError(f"prefix '{prefix}' must be up to {MAX_PREFIX_DIGITS} digits or '*'")
    raw_type = (values.get("message_type") or "").strip().upper()
    message_type = None
    if raw_type not in ("", ANY):
        try:
            message_type = MessageType.parse(raw_type)
        except ValueError:
            raise ValueError(
                f"message_type '{raw_type}' is not one of OTP, TRANSACTIONAL, PROMOTIONAL, *"
            ) from None
    price = currency.to_minor(values.get("price") or "")
    raw_volume = (values.get("min_volume") or "").strip() or "0"
    if not raw_volume.isdigit():
        raise ValueError(f"min_volume '{raw_volume}' must be a whole number")
    return PriceRule(
        channel=channel,
        prefix=prefix,
        message_type=message_type,
        price=price,
        min_volume=int(raw_volume),
        account_id=account_id,
    )


def parse_price_table(
    lines: Iterable[str], currency: Currency, account_id: str | None = None
) -> list[PriceRule]:
    """A CSV price table with a header row; all rows valid or InvalidRequestError listing the
    first problems with their line numbers (nothing is half-imported)."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise InvalidRequestError("the price table is empty")
    names = [name.strip().lstrip("\ufeff").lower() for name in header]
    missing = [name for name in CSV_COLUMNS if name not in names]
    unknown = [name for name in names if name not in CSV_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        raise InvalidRequestError(
            "the header must be channel,prefix,message_type,price[,min_volume]"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    rules: dict[tuple[object, ...], PriceRule] = {}
    problems: list[str] = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            problems.append(f"line {line}: {len(row)} cells, expected {len(names)}")
            continue
        try:
            rule = parse_rule(dict(zip(names, row, strict=True)), currency, account_id)
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        if rule.key in rules:
            problems.append(f"line {line}: the same channel, prefix, type and volume twice")
            continue
        rules[rule.key] = rule
    if problems:
        shown = problems[:MAX_TABLE_ERRORS]
        more = len(problems) - len(shown)
        raise InvalidRequestError(
            "the price table was not imported: "
            + "; ".join(shown)
            + (f"; and {more} more" if more else "")
        )
    return list(rules.values())


def rule_row(rule: PriceRule, currency: Currency) -> tuple[str, str, str, str, int]:
    """A rule as a price table row, the inverse of `parse_rule`."""
    return (
        rule.channel.value,
        rule.prefix or ANY,
        rule.message_type.value if rule.message_type else ANY,
        currency.format(rule.price),
        rule.min_volume,
    )
