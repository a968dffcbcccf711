"""Structured logging with secrets kept out: OTP codes, keys, passwords and tokens are redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog

# Parameter names whose values never reach a log line, in URLs or in structured fields.
SECRET_NAMES = frozenset(
    {
        "key", "code", "otp", "password", "authtoken", "token", "access_token", "secret",
        "message", "messagetext", "authorization", "client_secret", "refresh_token",
        "hub.verify_token", "verify_token", "app_secret", "callback_secret",
        "state", "client_assertion",
        "link",  # a Shopify install link (a credential)
    }
)  # fmt: skip
# Redacted in query strings only: what callers put in URLs (Shopify signs its redirects with
# `hmac` over `host`, `session` and the rest; OIDC hands back `id_token`), while a structured
# field named `host` or `session` is ours and says where something went.
QUERY_SECRET_NAMES = SECRET_NAMES | {"hmac", "signature", "host", "session", "id_token"}
# any name containing one of these is a secret too (client_secret, x_password, …)
SECRET_PARTS = ("secret", "password")
REDACTED = "***"
_INLINE = re.compile(
    r"(?i)\b(key|code|otp|password|authtoken|token|message|state|client_assertion|hmac"
    r"|signature|id_token|\w*secret\w*|\w*password\w*)=([^&\s]+)"
)


def is_secret_name(name: str, names: frozenset[str] = SECRET_NAMES) -> bool:
    lowered = name.lower()
    return lowered in names or any(part in lowered for part in SECRET_PARTS)


def redact_query(query: str) -> str:
    """A query string with every secret parameter's value replaced."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode(
        [
            (name, REDACTED if is_secret_name(name, QUERY_SECRET_NAMES) else value)
            for name, value in pairs
        ],
        safe="*",
    )


def redact_text(text: str) -> str:
    """Best effort for free text that may embed a URL with secret parameters."""
    return _INLINE.sub(lambda match: f"{match.group(1)}={REDACTED}", text)


def _redact_event(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    for field in list(event):
        if is_secret_name(field):
            event[field] = REDACTED
        elif isinstance(event[field], str) and field != "event":
            event[field] = redact_text(event[field])
    return event


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    # Tracebacks are plain text: rich's formatter would print local variables, codes included.
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_event,
            *([structlog.processors.format_exc_info] if fmt == "json" else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Library loggers (uvicorn errors, alembic) go through the same level; uvicorn's access
    # log is off because it would print raw query strings with codes and keys in them.
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
