"""`switchboard send otp|sms …` and `switchboard verify ID CODE`: the Python client for scripts.

They talk to a running API (`--url`, default $SWITCHBOARD_URL; ours or the hosted service) with
$SWITCHBOARD_TOKEN, or with $SWITCHBOARD_CUSTOMER_ID and $SWITCHBOARD_PASSWORD (or
$SWITCHBOARD_KEY, the password in base64) and optionally $SWITCHBOARD_EMAIL. They print JSON and
exit by the response code's class: 0 success, 1 no answer or a server error, 2 a bad request
(400, 409, 511), 3 credentials (501), 4 a verification outcome (505, 700, 702, 703, 705),
5 a limit (506, 800).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from switchboard.client import Client, Credentials, MessageOptions, SwitchboardError

send_app = typer.Typer(
    help="Send a code or a message through a Switchboard or Message Central API.",
    no_args_is_help=True,
)

EXIT_CODES = {
    400: 2, 409: 2, 511: 2, 501: 3, 505: 4, 700: 4, 702: 4, 703: 4, 705: 4, 506: 5, 800: 5,
}  # fmt: skip

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="SWITCHBOARD_URL", help="API base URL (or $SWITCHBOARD_URL)."),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Reuse to make a retried send a no-op (24 h)."),
]


def _fail(message: str, exit_code: int, code: int | None = None) -> typer.Exit:
    typer.echo(json.dumps({"responseCode": code, "errorMessage": message}))
    return typer.Exit(exit_code)


def _client(url: str | None) -> Client:
    if not url:
        raise _fail("give --url or set SWITCHBOARD_URL", 2)
    token = os.environ.get("SWITCHBOARD_TOKEN")
    if token:
        return Client(url, token=token)
    customer_id = os.environ.get("SWITCHBOARD_CUSTOMER_ID")
    password = os.environ.get("SWITCHBOARD_PASSWORD")
    key = os.environ.get("SWITCHBOARD_KEY")
    if not customer_id or (password is None) == (key is None):
        raise _fail(
            "set SWITCHBOARD_TOKEN, or SWITCHBOARD_CUSTOMER_ID with SWITCHBOARD_PASSWORD "
            "or SWITCHBOARD_KEY",
            2,
        )
    email = os.environ.get("SWITCHBOARD_EMAIL")
    return Client(
        url, Credentials(customer_id=customer_id, password=password, key=key, email=email)
    )


def _print(result: Any) -> None:
    view = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "raw"}
    typer.echo(json.dumps(view, indent=2, default=str))


def _answer(url: str | None, call: Any) -> None:
    with _client(url) as client:
        try:
            result = call(client)
        except SwitchboardError as exc:
            raise _fail(exc.message, EXIT_CODES.get(exc.code or 0, 1), exc.code) from None
    _print(result)


@send_app.command("otp")
def send_otp(
    url: UrlOption = None,
    country_code: Annotated[str | None, typer.Option(help="e.g. 91")] = None,
    mobile: Annotated[str | None, typer.Option(help="The national number.")] = None,
    flow: Annotated[str, typer.Option(help="SMS, WHATSAPP, RCS or EMAIL.")] = "SMS",
    email: Annotated[str | None, typer.Option(help="For EMAIL (then no number is needed).")] = None,
    length: Annotated[int | None, typer.Option(help="Digits, 4–8.")] = None,
    timeout: Annotated[int | None, typer.Option(help="Validity in seconds, 20–600.")] = None,
    fallback: Annotated[str | None, typer.Option(help="e.g. WHATSAPP,EMAIL")] = None,
    idempotency_key: KeyOption = None,
) -> None:
    """Send a verification code; prints the verificationId to validate with `verify`."""
    _answer(url, lambda client: client.send_otp(
        country_code, mobile, flow_type=flow, email=email, otp_length=length,
        otp_timeout_s=timeout, fallback=fallback.split(",") if fallback else None,
        idempotency_key=idempotency_key,
    ))  # fmt: skip


@send_app.command("sms")
def send_sms(
    message: Annotated[str, typer.Argument(help="The text; ##var1## … with --file.")],
    url: UrlOption = None,
    sender: Annotated[str | None, typer.Option(help="Sender id (required for SMS).")] = None,
    country_code: Annotated[str | None, typer.Option(help="With --mobile, e.g. 91")] = None,
    mobile: Annotated[str | None, typer.Option(help="One national number.")] = None,
    numbers: Annotated[
        str | None, typer.Option(help="Comma-separated entries: country code, space, number.")
    ] = None,
    file: Annotated[Path | None, typer.Option(help="An .xlsx of recipients.", exists=True)] = None,
    flow: Annotated[str, typer.Option(help="SMS, WHATSAPP, RCS or EMAIL.")] = "SMS",
    message_type: Annotated[
        str | None, typer.Option("--type", help="TRANSACTIONAL, PROMOTIONAL or OTP.")
    ] = None,
    email: Annotated[str | None, typer.Option(help="The address, for --flow EMAIL.")] = None,
    subject: Annotated[str | None, typer.Option(help="For --flow EMAIL.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="scheduleTime, e.g. 2026-12-24 09:00")
    ] = None,
    template_id: Annotated[str | None, typer.Option(help="DLT template id.")] = None,
    entity_id: Annotated[str | None, typer.Option(help="DLT entity id.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Check and price only; nothing is sent.")] = False,
    idempotency_key: KeyOption = None,
) -> None:
    """Send a message (MessageNow) to one number, a list, an .xlsx or an e-mail address."""
    modes = [mobile is not None, numbers is not None, file is not None]
    if sum(modes) > 1 or (sum(modes) == 0 and flow.upper() != "EMAIL"):
        raise _fail("give exactly one of --mobile, --numbers or --file", 2)
    options = MessageOptions(
        sender_id=sender, flow_type=flow, message_type=message_type, email=email,
        subject=subject, schedule_time=schedule, template_id=template_id, entity_id=entity_id,
        dry_run=dry_run,
    )  # fmt: skip
    if numbers is not None:
        listed = [n.strip() for n in numbers.split(",") if n.strip()]
        _answer(url, lambda c: c.send_sms_list(listed, message, options,
                                               idempotency_key=idempotency_key))  # fmt: skip
    elif file is not None:
        _answer(url, lambda c: c.send_sms_file(file, message, options,
                                               idempotency_key=idempotency_key))  # fmt: skip
    else:
        _answer(url, lambda c: c.send_sms(country_code, mobile, message, options,
                                          idempotency_key=idempotency_key))  # fmt: skip


def verify(
    verification_id: Annotated[str, typer.Argument(help="From `send otp`.")],
    code: Annotated[str, typer.Argument(help="The code the user typed.")],
    url: UrlOption = None,
) -> None:
    """Validate a code: exit 0 when it is right, 4 when wrong, expired or already used."""
    _answer(url, lambda client: client.validate_otp(verification_id, code))
