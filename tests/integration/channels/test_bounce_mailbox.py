"""Bounces come back from an IMAP mailbox (stdlib imaplib against a loopback IMAP4rev1 peer)."""

from __future__ import annotations

import asyncio
import imaplib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.integration.channels.test_email import (
    RecordingSink,
    Relay,
    options,
    outbound,
    send,
)
from tests.integration.channels.test_email import relay as relay  # fixture
from tests.integration.channels.test_email import serve as serve  # fixture

from switchboard.channels.base import DeliveryReport
from switchboard.channels.bounce_mailbox import BounceMailbox, BounceMailboxOptions
from switchboard.channels.email import EmailDriver
from switchboard.testing.bounces import delivery_status_notification
from switchboard.testing.imap_peer import ImapPeer

NOT_A_BOUNCE = b"From: someone@example.test\r\nSubject: out of office\r\n\r\nI am away.\r\n"


@pytest.fixture
async def mailbox() -> AsyncIterator[ImapPeer]:
    peer = ImapPeer(user="bounces", password="mailbox secret")
    await peer.start()
    yield peer
    await peer.stop()


def mailbox_options(peer: ImapPeer, **overrides: Any) -> BounceMailboxOptions:
    values: dict[str, Any] = {
        "host": "127.0.0.1", "port": peer.port, "security": "none", "username": "bounces",
        "password": "mailbox secret", "poll_interval_s": 0.05, "timeout_s": 5,
    }  # fmt: skip
    values.update(overrides)
    return BounceMailboxOptions.model_validate(values)


async def bounced_mail(relay: Relay, serve: Any) -> tuple[str, bytes]:
    provider_id = await send(options(serve()), outbound())
    headers = relay.accepted[-1].original_content.split(b"\r\n\r\n", 1)[0]
    return provider_id, delivery_status_notification(headers)


async def test_the_driver_reads_bounces_from_its_mailbox_and_marks_them_read(
    relay: Relay, serve: Any, mailbox: ImapPeer
) -> None:
    provider_id, bounce = await bounced_mail(relay, serve)
    bounce_uid = mailbox.deliver(bounce)
    other_uid = mailbox.deliver(NOT_A_BOUNCE)
    opts = options(serve()).model_copy(update={"bounce_mailbox": mailbox_options(mailbox)})
    driver = EmailDriver("mail-main", opts)
    sink = RecordingSink()
    await driver.start(sink)
    try:
        for _ in range(100):
            if "\\Seen" in mailbox.messages[other_uid].flags:
                break
            await asyncio.sleep(0.05)
    finally:
        await driver.close()

    [report] = sink.reports
    assert (report.provider_id, report.error_code) == (provider_id, "5.1.1")
    assert "\\Seen" in mailbox.messages[bounce_uid].flags
    assert "\\Seen" in mailbox.messages[other_uid].flags  # read, not ours, not reported


class FailingSink(RecordingSink):
    async def on_report(self, report: DeliveryReport) -> None:
        raise RuntimeError("database is down")


async def test_a_bounce_that_could_not_be_stored_stays_unread_for_the_next_poll(
    relay: Relay, serve: Any, mailbox: ImapPeer
) -> None:
    provider_id, bounce = await bounced_mail(relay, serve)
    uid = mailbox.deliver(bounce)
    driver = EmailDriver("mail-main", options(serve()))
    await driver.start(FailingSink())
    failing = BounceMailbox(mailbox_options(mailbox), driver.receive_bounce)
    assert await failing.poll_once() == 0
    assert mailbox.messages[uid].flags == set()

    sink = RecordingSink()
    await driver.start(sink)  # the database is back
    assert await BounceMailbox(mailbox_options(mailbox), driver.receive_bounce).poll_once() == 1
    assert [r.provider_id for r in sink.reports] == [provider_id]
    assert mailbox.messages[uid].flags == {"\\Seen"}


async def test_deleting_after_reading_and_a_dropped_connection_lose_nothing(
    relay: Relay, serve: Any, mailbox: ImapPeer
) -> None:
    _, bounce = await bounced_mail(relay, serve)
    mailbox.deliver(bounce)
    driver = EmailDriver("mail-main", options(serve()))
    sink = RecordingSink()
    await driver.start(sink)
    reader = BounceMailbox(mailbox_options(mailbox, after_reading="delete"), driver.receive_bounce)
    mailbox.fail_next_fetch = True
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        await reader.poll_once()
    assert len(mailbox.messages) == 1
    assert await reader.poll_once() == 1
    assert mailbox.messages == {}
    assert len(sink.reports) == 1


async def test_wrong_mailbox_credentials_are_an_imap_error(mailbox: ImapPeer) -> None:
    reader = BounceMailbox(mailbox_options(mailbox, password="wrong"), _never)
    with pytest.raises(imaplib.IMAP4.error):
        await reader.poll_once()
    assert mailbox.failed_logins == 1


async def _never(raw: bytes) -> bool:
    raise AssertionError("nothing should be handled")
