"""E-mail driver: SMTP submission (TLS, STARTTLS or plain) and DSN bounce parsing."""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import format_datetime, parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Literal

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from switchboard.channels.base import (
    DeliveryReport,
    OutboundMessage,
    ReportSink,
    ReportState,
    SendError,
    SendErrorKind,
    SendResult,
)
from switchboard.channels.bounce_mailbox import BounceMailbox, BounceMailboxOptions
from switchboard.clock import Clock, SystemClock
from switchboard.domain.messages import Channel, MessageType

_UNAVAILABLE_AFTER_AUTH_FAILURE = timedelta(seconds=60)
_RETRY_AFTER_S = 60.0  # greylisting and "try again later" replies want minutes, not seconds
_DEFAULT_SUBJECTS = {
    MessageType.OTP: "Your verification code",
    MessageType.TRANSACTIONAL: "A message for you",
    MessageType.PROMOTIONAL: "A message for you",
}
_NOT_MSG_ID_CHARS = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")  # RFC 5322 dot-atom-text


class EmailOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    security: Literal["tls", "starttls", "none"] = "starttls"
    from_address: str  # "Brand <no-reply@example.com>" or a bare address
    timeout_s: float = Field(default=30.0, gt=0)
    ca_file: Path | None = None  # trust a private CA (an internal relay) besides the system's
    # where bounces to our envelope sender arrive; without it, feed them with
    # `switchboard bounces receive` from the MTA (a pipe alias)
    bounce_mailbox: BounceMailboxOptions | None = None

    @field_validator("from_address")
    @classmethod
    def _has_domain(cls, value: str) -> str:
        _, address = parseaddr(value)
        if "@" not in address or not address.rsplit("@", 1)[1]:
            raise ValueError("from_address needs an address with a domain")
        return value

    @model_validator(mode="after")
    def _credentials_in_pairs(self) -> EmailOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password, or neither")
        return self


class EmailDriver:
    """Submits each message on its own SMTP session; the provider id is our Message-ID."""

    channels = frozenset({Channel.EMAIL})

    def __init__(self, name: str, options: EmailOptions, *, clock: Clock | None = None) -> None:
        self.name = name
        self._options = options
        self._clock = clock or SystemClock()
        self._envelope_from = parseaddr(options.from_address)[1]
        self._domain = self._envelope_from.rsplit("@", 1)[1]
        self._sink: ReportSink | None = None
        self._mailbox: BounceMailbox | None = None
        self._running = False
        self._unavailable_until: datetime | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self, sink: ReportSink) -> None:
        self._sink = sink
        self._running = True
        if self._options.bounce_mailbox is not None and self._mailbox is None:
            self._mailbox = BounceMailbox(self._options.bounce_mailbox, self.receive_bounce)
            self._mailbox.start()

    async def close(self) -> None:
        self._running = False
        if self._mailbox is not None:
            await self._mailbox.stop()
            self._mailbox = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self._options.timeout_s)

    def is_available(self) -> bool:
        if not self._running:
            return False
        return self._unavailable_until is None or self._clock.now() >= self._unavailable_until

    def message_id(self, message: OutboundMessage) -> str:
        """Our Message-ID for `message`: stable across attempts, so a resend is the same mail."""
        return f"<{_NOT_MSG_ID_CHARS.sub('-', message.id)}@{self._domain}>"

    async def send(self, message: OutboundMessage) -> SendResult:
        """Submit over SMTP. SMTP has no delivery report: success means the relay accepted it."""
        if not self._running:
            raise SendError(SendErrorKind.TRANSIENT, f"{self.name} is not running")
        recipient = _single_address(message.destination)
        mail = self._compose(message, recipient)
        with self._tracked():
            smtp = aiosmtplib.SMTP(
                hostname=self._options.host,
                port=self._options.port,
                username=self._options.username,
                password=self._options.password.get_secret_value()
                if self._options.password
                else None,
                use_tls=self._options.security == "tls",
                start_tls=self._options.security == "starttls",
                timeout=self._options.timeout_s,
                cert_bundle=str(self._options.ca_file) if self._options.ca_file else None,
            )
            try:
                await self._submit(smtp, mail, recipient)
            finally:
                smtp.close()
        return SendResult(provider_ids=(str(mail["Message-ID"]),))

    def parse_bounce(self, raw_email: bytes) -> DeliveryReport | None:
        """A DSN (RFC 3464 multipart/report) for one of our mails → UNDELIV; anything else → None.

        Delays and successful relays are not final and give None, as do bounces of mail we
        cannot identify (no Message-ID, Original-Message-ID or X-Switchboard-Id of ours).
        """
        bounce = BytesParser(policy=policy.default).parsebytes(raw_email)
        status_part = next(
            (p for p in bounce.walk() if p.get_content_type() == "message/delivery-status"), None
        )
        if status_part is None:
            return None
        blocks = [b for b in status_part.get_payload() if isinstance(b, Message)]
        failed = next((b for b in blocks[1:] if str(b.get("Action", "")).lower() == "failed"), None)
        if not blocks or failed is None:
            return None
        provider_id = self._original_id(bounce, blocks[0])
        if provider_id is None:
            return None
        raw = {
            key.lower().replace("-", "_"): str(failed[key])
            for key in ("Final-Recipient", "Diagnostic-Code", "Remote-MTA")
            if failed.get(key)
        }
        done_at = _date(failed.get("Last-Attempt-Date") or blocks[0].get("Arrival-Date"))
        return DeliveryReport(
            connector=self.name,
            provider_id=provider_id,
            state=ReportState.UNDELIV,
            error_code=str(failed.get("Status", "")).strip() or None,
            done_at=done_at or _date(bounce.get("Date")),
            raw=raw,
        )

    async def receive_bounce(self, raw_email: bytes) -> bool:
        """Parse a bounce and store it through the sink; False when it was not one of ours."""
        if self._sink is None:
            raise RuntimeError(f"{self.name} was not started")
        report = self.parse_bounce(raw_email)
        if report is None:
            return False
        await self._sink.on_report(report)
        return True

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def _compose(self, message: OutboundMessage, recipient: str) -> EmailMessage:
        mail = EmailMessage(policy=policy.SMTP)
        try:
            mail["From"] = self._options.from_address
            mail["To"] = recipient
            mail["Subject"] = message.subject or _DEFAULT_SUBJECTS[message.message_type]
        except ValueError as error:  # CR/LF in a header: an injection attempt or garbage
            raise SendError(SendErrorKind.PERMANENT, f"invalid header: {error}") from error
        mail["Date"] = format_datetime(self._clock.now())
        mail["Message-ID"] = self.message_id(message)
        # Bounces quote the original headers; this one survives MTAs that rewrite Message-ID.
        mail["X-Switchboard-Id"] = _NOT_MSG_ID_CHARS.sub("-", message.id)
        if message.message_type is MessageType.OTP:
            mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(message.text)
        mail.add_alternative(message.html or _html_from_text(message.text), subtype="html")
        return mail

    async def _submit(self, smtp: aiosmtplib.SMTP, mail: EmailMessage, recipient: str) -> None:
        utf8 = not (self._envelope_from + recipient).isascii()
        try:
            await smtp.connect()  # TLS or STARTTLS, then AUTH when credentials are set
            if utf8 and not smtp.supports_extension("smtputf8"):
                raise SendError(SendErrorKind.PERMANENT, "relay cannot take non-ASCII addresses")
            options = ["SMTPUTF8"] if utf8 else []
            await smtp.mail(self._envelope_from, options=options, encoding="utf-8")
            await smtp.rcpt(recipient, encoding="utf-8")
        except aiosmtplib.SMTPAuthenticationError as error:
            self._unavailable_until = self._clock.now() + _UNAVAILABLE_AFTER_AUTH_FAILURE
            raise _reply_error(error) from error
        except aiosmtplib.SMTPNotSupported as error:
            # e.g. STARTTLS or AUTH not offered: a configuration mismatch, not this message.
            self._unavailable_until = self._clock.now() + _UNAVAILABLE_AFTER_AUTH_FAILURE
            raise SendError(SendErrorKind.PERMANENT, str(error)) from error
        except aiosmtplib.SMTPResponseException as error:
            raise _reply_error(error) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            raise SendError(SendErrorKind.TRANSIENT, f"SMTP session failed: {error!r}") from error
        payload = mail.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
        try:
            await smtp.data(payload)
        except aiosmtplib.SMTPResponseException as error:
            raise _reply_error(error) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            # The body went out; without the final reply we cannot know if the relay kept it.
            raise SendError(SendErrorKind.AMBIGUOUS, f"no reply after DATA: {error!r}") from error
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await smtp.quit()

    def _original_id(self, bounce: Message, per_message: Message) -> str | None:
        headers: list[Message] = [per_message]
        for part in bounce.walk():
            kind = part.get_content_type()
            if kind == "message/rfc822":
                headers.extend(p for p in part.get_payload() if isinstance(p, Message))
            elif kind == "text/rfc822-headers":
                quoted = part.get_payload(decode=True)
                if isinstance(quoted, bytes):
                    headers.append(BytesHeaderParser(policy=policy.default).parsebytes(quoted))
        suffix = f"@{self._domain}>"
        for header in headers:
            for name in ("Original-Message-ID", "Message-ID"):
                value = str(header.get(name, "")).strip()
                if value.endswith(suffix):
                    return value
            ours = str(header.get("X-Switchboard-Id", "")).strip()
            if ours:
                return f"<{_NOT_MSG_ID_CHARS.sub('-', ours)}{suffix}"
        return None


def _single_address(destination: str) -> str:
    name, address = parseaddr(destination)
    if name or "@" not in address or address != destination.strip() or "," in destination:
        raise SendError(SendErrorKind.PERMANENT, "destination must be one bare e-mail address")
    return address


def _reply_error(error: aiosmtplib.SMTPResponseException) -> SendError:
    reason = f"{error.code} {error.message}"
    # RFC 5321 §4.2.1: 4yz is a transient negative reply, 5yz a permanent one.
    if 400 <= error.code < 500:
        return SendError(
            SendErrorKind.TRANSIENT,
            reason,
            provider_code=str(error.code),
            retry_after_s=_RETRY_AFTER_S,
        )
    return SendError(SendErrorKind.PERMANENT, reason, provider_code=str(error.code))


def _html_from_text(text: str) -> str:
    body = "<br>\n".join(html.escape(line) for line in text.splitlines())
    return (
        f'<!doctype html>\n<html><body><p style="font-family:sans-serif">{body}</p></body></html>\n'
    )


def _date(raw: object) -> datetime | None:
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(str(raw))
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
