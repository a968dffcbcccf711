"""Bounces read from an IMAP mailbox (the Return-Path of our mail) and fed to the e-mail driver."""

from __future__ import annotations

import asyncio
import imaplib
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from switchboard.observability import get_logger

log = get_logger("switchboard.channels.email")


class BounceMailboxOptions(BaseModel):
    """`[connectors.bounce_mailbox]` of an smtp connector: where DSNs to our address land."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = Field(min_length=1)
    password: SecretStr
    mailbox: str = "INBOX"
    poll_interval_s: float = Field(default=60.0, gt=0)
    batch_size: int = Field(default=100, ge=1, le=1000)
    # After a message is handled: mark it read (default) or delete it.
    after_reading: Literal["mark_seen", "delete"] = "mark_seen"
    timeout_s: float = Field(default=30.0, gt=0)
    ca_file: Path | None = None


class BounceMailbox:
    """Polls the mailbox for unseen messages, hands each to `handle` (which stores the bounce,
    or says it is none of ours), then marks it read. A message is marked only after `handle`
    returned, so a crash or a database error means it is read again next time (the report
    store is idempotent for final states), never lost."""

    def __init__(
        self, options: BounceMailboxOptions, handle: Callable[[bytes], Awaitable[bool]]
    ) -> None:
        self._options = options
        self._handle = handle
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bounce-mailbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
                log.warning("bounce mailbox unreachable", host=self._options.host, error=str(exc))
            await asyncio.sleep(self._options.poll_interval_s)

    async def poll_once(self) -> int:
        """Read one batch of unseen messages; returns how many were handled."""
        fetched = await asyncio.to_thread(self._fetch_unseen)
        handled: list[bytes] = []
        for uid, raw in fetched:
            try:
                ours = await self._handle(raw)
            except Exception:  # storing failed: leave it unseen for the next poll
                log.exception("storing a bounce failed")
                break
            handled.append(uid)
            if not ours:
                log.info("mailbox message is not a bounce of ours", uid=uid.decode())
        if handled:
            await asyncio.to_thread(self._mark, handled)
        return len(handled)

    def _connect(self) -> imaplib.IMAP4:
        options = self._options
        context = ssl.create_default_context(
            cafile=str(options.ca_file) if options.ca_file else None
        )
        imap: imaplib.IMAP4
        if options.security == "tls":
            imap = imaplib.IMAP4_SSL(
                options.host, options.port, ssl_context=context, timeout=options.timeout_s
            )
        else:
            imap = imaplib.IMAP4(options.host, options.port, timeout=options.timeout_s)
            if options.security == "starttls":
                imap.starttls(context)
        imap.login(options.username, options.password.get_secret_value())
        status, _ = imap.select(options.mailbox)
        if status != "OK":
            imap.logout()
            raise imaplib.IMAP4.error(f"cannot select mailbox {options.mailbox!r}")
        return imap

    def _fetch_unseen(self) -> list[tuple[bytes, bytes]]:
        imap = self._connect()
        try:
            _, found = imap.uid("SEARCH", "UNSEEN")
            uids: list[bytes] = (found[0] or b"").split()[: self._options.batch_size]
            messages: list[tuple[bytes, bytes]] = []
            for uid in uids:
                _, data = imap.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                raw = next((part[1] for part in data if isinstance(part, tuple)), None)
                if isinstance(raw, bytes):
                    messages.append((uid, raw))
            return messages
        finally:
            imap.logout()

    def _mark(self, uids: list[bytes]) -> None:
        imap = self._connect()
        try:
            flag = "(\\Deleted)" if self._options.after_reading == "delete" else "(\\Seen)"
            imap.uid("STORE", b",".join(uids).decode(), "+FLAGS", flag)
            if self._options.after_reading == "delete":
                imap.expunge()
        finally:
            imap.logout()
