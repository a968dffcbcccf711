"""Secrets never reach a log line, not even inside logged URLs."""

from __future__ import annotations

import pytest

from switchboard.observability import configure_logging, get_logger, redact_query, redact_text


def test_secret_query_parameters_are_redacted() -> None:
    query = "customerId=C-1&key=c2VjcmV0&scope=NEW&code=482913&authToken=eyJ.x.y&message=hi%20there"
    redacted = redact_query(query)
    for secret in ("c2VjcmV0", "482913", "eyJ.x.y", "hi"):
        assert secret not in redacted
    assert "customerId=C-1" in redacted
    assert "scope=NEW" in redacted


def test_urls_inside_free_text_are_redacted() -> None:
    text = "GET /verification/v3/validateOtp?verificationId=1&code=482913 failed"
    assert "482913" not in redact_text(text)
    assert "verificationId=1" in redact_text(text)


def test_structured_fields_named_like_secrets_are_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    get_logger("t").info("login", password="hunter22", token="eyJabc", url="/x?key=c2VjcmV0")
    err = capsys.readouterr().err
    for secret in ("hunter22", "eyJabc", "c2VjcmV0"):
        assert secret not in err
    assert '"event": "login"' in err
