"""Pure pricing and wallet rules: money, rule choice, tiers, price tables, charge transitions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from switchboard.domain.messages import Channel, MessageStatus, MessageType
from switchboard.domain.pricing import (
    Billable,
    Currency,
    PriceRule,
    billable_units,
    choose_rule,
    parse_price_table,
    period_of,
    price_billables,
    rule_row,
)
from switchboard.domain.wallet import ChargeState, Wallet, charge_transition, is_low
from switchboard.errors import InvalidRequestError

USD = Currency("USD", 4)


def rule(
    channel: Channel = Channel.SMS,
    prefix: str = "",
    message_type: MessageType | None = None,
    price: str = "0.01",
    min_volume: int = 0,
    account_id: str | None = None,
) -> PriceRule:
    return PriceRule(
        channel=channel, prefix=prefix, message_type=message_type, price=USD.to_minor(price),
        min_volume=min_volume, account_id=account_id,
    )  # fmt: skip


def chosen(rules: list[PriceRule], digits: str = "919876543210", **kwargs: object) -> str | None:
    options: dict[str, object] = {
        "account_id": "C-1", "channel": Channel.SMS, "digits": digits,
        "message_type": MessageType.OTP, "volume": 0, **kwargs,
    }  # fmt: skip
    found = choose_rule(rules, **options)  # type: ignore[arg-type]
    return None if found is None else USD.format(found.price)


def test_amounts_are_exact_integers_of_the_minor_unit() -> None:
    assert USD.to_minor("0.0075") == 75
    assert USD.to_minor("12") == 120_000
    assert USD.to_minor(Decimal("0.1")) == 1000
    assert USD.format(75) == "0.0075"
    assert USD.format(-120_075) == "-12.0075"
    assert Currency("JPY", 0).format(12) == "12"


@pytest.mark.parametrize("raw", ["0.00075", "abc", "-1", "NaN", "Infinity", ""])
def test_amounts_that_would_need_rounding_or_make_no_sense_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=r"decimal|negative|more than 4"):
        USD.to_minor(raw)


def test_the_longest_prefix_wins_then_the_exact_message_type() -> None:
    rules = [
        rule(price="0.01"),
        rule(prefix="91", price="0.005"),
        rule(prefix="9198", price="0.004"),
        rule(prefix="91", message_type=MessageType.OTP, price="0.002"),
    ]
    assert chosen(rules) == "0.0040"  # +9198… : the longest prefix
    assert chosen(rules, digits="919123456789") == "0.0020"  # 91 + OTP beats 91 + *
    assert chosen(rules, digits="919123456789", message_type=MessageType.PROMOTIONAL) == "0.0050"
    assert chosen(rules, digits="447911123456") == "0.0100"
    assert chosen(rules, channel=Channel.WHATSAPP) is None


def test_a_customers_own_rule_beats_any_platform_rule_and_others_are_ignored() -> None:
    rules = [
        rule(prefix="91", message_type=MessageType.OTP, price="0.002"),
        rule(price="0.0015", account_id="C-1"),
        rule(prefix="91", message_type=MessageType.OTP, price="0.0001", account_id="C-2"),
    ]
    assert chosen(rules) == "0.0015"
    assert chosen(rules, account_id="C-3") == "0.0020"


def test_volume_tiers_apply_from_their_monthly_volume() -> None:
    rules = [
        rule(prefix="91", price="0.003"),
        rule(prefix="91", price="0.002", min_volume=1000),
        rule(prefix="91", price="0.001", min_volume=10_000),
        rule(prefix="9198", price="0.0025", min_volume=500),  # a tier alone: not before 500
    ]
    assert chosen(rules, digits="919123456789", volume=999) == "0.0030"
    assert chosen(rules, digits="919123456789", volume=1000) == "0.0020"
    assert chosen(rules, digits="919123456789", volume=50_000) == "0.0010"
    assert chosen(rules, volume=10) == "0.0030"
    assert chosen(rules, volume=500) == "0.0025"


def test_sms_is_billed_per_segment_and_a_batch_climbs_the_tiers_as_it_goes() -> None:
    rules = [rule(price="0.003"), rule(price="0.001", min_volume=4)]
    items = [
        Billable(channel=Channel.SMS, message_type=MessageType.OTP, destination="+919876543210",
                 units=billable_units(Channel.SMS, 3))
        for _ in range(3)
    ]  # fmt: skip
    charges = price_billables(rules, "C-1", items, {Channel.SMS: 0})
    assert [USD.format(c) for c in charges] == ["0.0090", "0.0090", "0.0030"]  # at 0, 3, 6 units
    assert billable_units(Channel.WHATSAPP, 7) == 1


def test_test_numbers_are_free_and_unpriced_sends_are_refused_unless_there_is_a_default() -> None:
    item = Billable(
        channel=Channel.RCS, message_type=MessageType.OTP, destination="+919876543210", units=1
    )
    free = price_billables([], "C-1", [item], {}, free_destinations={"+919876543210"})
    assert free == [0]
    with pytest.raises(
        InvalidRequestError, match=r"no price is set for RCS OTP messages to \+9198"
    ):
        price_billables([], "C-1", [item], {})
    assert price_billables([], "C-1", [item], {}, default_price=7) == [7]


def test_a_price_table_round_trips_and_reads_spellings_operators_use() -> None:
    text = (
        "\ufeffChannel,Prefix,Message_Type,Price,min_volume\n"
        "sms,+91,OTP,0.002,\n"
        "SMS,91,TRANSACTION,0.003,1000\n"
        "WHATSAPP,*,*,0.008,0\n"
        "\n"
    )
    rules = parse_price_table(text.splitlines(), USD, "C-1")
    assert [rule_row(r, USD) for r in rules] == [
        ("SMS", "91", "OTP", "0.0020", 0),
        ("SMS", "91", "TRANSACTIONAL", "0.0030", 1000),
        ("WHATSAPP", "*", "*", "0.0080", 0),
    ]
    assert {r.account_id for r in rules} == {"C-1"}


def test_a_bad_price_table_names_every_bad_line_and_imports_nothing() -> None:
    text = (
        "channel,prefix,message_type,price\n"
        "SMS,91,OTP,0.002\n"
        "FAX,91,OTP,0.002\n"
        "SMS,91x,OTP,0.002\n"
        "SMS,91,BULK,0.002\n"
        "SMS,91,OTP,0.00001\n"
        "SMS,91,OTP\n"
        "SMS,+91,otp,0.003\n"
    )
    with pytest.raises(InvalidRequestError) as refused:
        parse_price_table(text.splitlines(), USD)
    reason = refused.value.message
    for line in (3, 4, 5, 6, 7, 8):
        assert f"line {line}:" in reason
    assert "line 2:" not in reason
    assert "channel 'FAX'" in reason
    assert "the same channel, prefix, type and volume twice" in reason


@pytest.mark.parametrize(
    "header", ["", "channel,prefix,price", "channel,prefix,message_type,price,colour"]
)
def test_a_price_table_needs_its_header(header: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"header|empty"):
        parse_price_table([header] if header else [], USD)


@pytest.mark.parametrize(
    ("before", "after", "state", "refund_rejected", "expected"),
    [
        (MessageStatus.SENDING, MessageStatus.SUBMITTED, ChargeState.HELD, False,
         ChargeState.SETTLED),
        (MessageStatus.SENDING, MessageStatus.UNKNOWN, ChargeState.HELD, False,
         ChargeState.SETTLED),  # maybe sent: the carrier may charge us
        (MessageStatus.QUEUED, MessageStatus.FAILED, ChargeState.HELD, False,
         ChargeState.REFUNDED),
        (MessageStatus.SENDING, MessageStatus.CANCELLED, ChargeState.HELD, False,
         ChargeState.REFUNDED),
        (MessageStatus.SENDING, MessageStatus.REJECTED, ChargeState.HELD, False,
         ChargeState.REFUNDED),  # refused at submit: no carrier took it
        (MessageStatus.SUBMITTED, MessageStatus.REJECTED, ChargeState.SETTLED, False, None),
        (MessageStatus.SUBMITTED, MessageStatus.REJECTED, ChargeState.SETTLED, True,
         ChargeState.REFUNDED),
        (MessageStatus.SUBMITTED, MessageStatus.DELIVERED, ChargeState.SETTLED, True, None),
        (MessageStatus.SUBMITTED, MessageStatus.UNDELIVERABLE, ChargeState.SETTLED, True, None),
        (MessageStatus.QUEUED, MessageStatus.FAILED, ChargeState.REFUNDED, False, None),
        (MessageStatus.QUEUED, MessageStatus.FAILED, None, False, None),
    ],
)  # fmt: skip
def test_what_a_status_change_does_to_the_charge(
    before: MessageStatus,
    after: MessageStatus,
    state: ChargeState | None,
    refund_rejected: bool,
    expected: ChargeState | None,
) -> None:
    assert charge_transition(before, after, state, refund_rejected=refund_rejected) is expected


def test_a_low_balance_alert_is_due_once_below_the_threshold() -> None:
    wallet = Wallet(account_id="C-1", balance=40, credit_limit=100)
    assert wallet.available == 140
    assert is_low(wallet, 50)
    assert not is_low(wallet, None)
    assert not is_low(wallet, 40)
    assert not is_low(Wallet(account_id="C-1", balance=40, low_balance_alerted=True), 50)


def test_volumes_count_per_utc_calendar_month() -> None:
    assert period_of(datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) == "2026-11"
